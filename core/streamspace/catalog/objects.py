"""Fetching a pack and reading its objects within budgets: what a hostile remote can cost.

Blocking (run through ``asyncio.to_thread`` with the rest of the fetch). Three bounds, each
checked before the work it bounds:

* **While the pack downloads** (``PackMeter``), every byte is counted as it arrives and each
  object header is read from the stream: the fetch is aborted as soon as the pack grows past
  ``max_repository_bytes``, declares more objects than ``max_pack_objects``, declares one object
  larger than ``max_object_bytes`` (a delta's result size counts, read from the delta's first
  bytes) or more than ``max_inflated_bytes`` in all. A header that lies is caught too: an object
  that inflates past its declared size aborts the fetch. Finding where one compressed object
  ends means inflating it, which the meter does in 64 KiB steps, keeping nothing. Only a pack
  that passed is handed to dulwich, which inflates one object at a time to index it: at most
  ``max_object_bytes`` (a delta's base and result: three times that).
* **Reading files** (``read_snapshot``): a blob's size comes from its pack or loose-object header
  before it is inflated; each distinct blob is read once, however many names it has, and the
  distinct bytes read are capped by ``max_read_bytes``; tree entries walked are capped too.
* **Parsing** is bounded by ``streamspace.catalog.parse`` (bytes parsed per repository).

So a sync holds at most about ``3 * max_object_bytes + max_read_bytes`` of repository data
(plus what parsing builds, bounded by the manifest budget), whatever the remote sends.
"""

from __future__ import annotations

import stat
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dulwich.objects import Blob, Commit, Tree

from streamspace.catalog.parse import Limits

SUBMODULE_MODE = 0o160000
OFS_DELTA, REF_DELTA = 6, 7
_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag", OFS_DELTA: "delta", REF_DELTA: "delta"}
_STEP = 64 * 1024  # inflated bytes produced per zlib call while metering
_SHA1_BYTES = 20


class SnapshotError(RuntimeError):
    """A limit was hit or the data is malformed; the message is safe to show."""


@dataclass(frozen=True)
class Snapshot:
    commit: str
    files: list[tuple[str, bytes]]
    skipped: list[str]  # symlinks, submodules, oversized blobs (paths only)


def _mib(count: int) -> str:
    return f"{count / 2**20:g} MiB"


def _varint(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """A little-endian base-128 number at ``start`` (delta headers): (value, end), or None."""
    value = shift = 0
    for index in range(start, min(len(data), start + 10)):
        value |= (data[index] & 0x7F) << shift
        shift += 7
        if not data[index] & 0x80:
            return value, index + 1
    return None


class PackMeter:
    """Reads a pack stream as it arrives (``feed``) and refuses it the moment it costs too much.

    Parses the pack format just far enough: the 12-byte header, then per object its type/size
    header, the base reference of a delta, and the zlib stream (inflated in steps, to find its
    end and to check the size it declared).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.received = 0
        self.declared = 0  # inflated bytes all objects declare (a delta: its data and result)
        self._pending = bytearray()
        self._objects_left: int | None = None  # None until the pack header is read
        self._stream: Any = None  # the zlib decompressor of the current object
        self._size = 0  # what the current object declares
        self._produced = 0
        self._delta_head: bytearray | None = None  # a delta's first bytes, until sizes known

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limits.max_repository_bytes:
            raise SnapshotError(
                f"repository is larger than {_mib(self.limits.max_repository_bytes)} packed"
            )
        self._pending += data
        while self._step():
            pass

    def finish(self) -> None:
        """After the last byte: the pack must have been complete."""
        if self._objects_left or self._stream is not None:
            raise SnapshotError("the remote sent an incomplete pack")

    def _step(self) -> bool:
        """Consume what the pending bytes allow; True when more may be consumable."""
        if self._objects_left is None:
            return self._pack_header()
        if self._stream is not None:
            return self._inflate()
        if self._objects_left > 0:
            return self._object_header()
        self._pending.clear()  # the trailing checksum
        return False

    def _pack_header(self) -> bool:
        if len(self._pending) < 12:
            return False
        header = bytes(self._pending[:12])
        del self._pending[:12]
        if header[:4] != b"PACK" or int.from_bytes(header[4:8], "big") not in (2, 3):
            raise SnapshotError("the remote did not send a Git pack")
        count = int.from_bytes(header[8:12], "big")
        if count > self.limits.max_pack_objects:
            raise SnapshotError(
                f"the pack holds {count} objects, more than {self.limits.max_pack_objects}"
            )
        self._objects_left = count
        return True

    def _object_header(self) -> bool:
        data = self._pending
        end = next((i + 1 for i in range(min(len(data), 10)) if not data[i] & 0x80), None)
        if end is None:
            if len(data) >= 10:
                raise SnapshotError("the pack has a malformed object header")
            return False
        kind = (data[0] >> 4) & 7
        size = data[0] & 0x0F
        for index in range(1, end):
            size |= (data[index] & 0x7F) << (4 + 7 * (index - 1))
        if kind not in _TYPES:
            raise SnapshotError("the pack has an object of unknown type")
        if kind == OFS_DELTA:
            offset_end = next(
                (i + 1 for i in range(end, min(len(data), end + 10)) if not data[i] & 0x80), None
            )
            if offset_end is None:
                if len(data) >= end + 10:
                    raise SnapshotError("the pack has a malformed delta offset")
                return False
            end = offset_end
        elif kind == REF_DELTA:
            if len(data) < end + _SHA1_BYTES:
                return False
            end += _SHA1_BYTES
        self._declare(size, _TYPES[kind])
        del data[:end]
        self._size, self._produced = size, 0
        self._delta_head = bytearray() if kind in (OFS_DELTA, REF_DELTA) else None
        self._stream = zlib.decompressobj()
        return True

    def _declare(self, size: int, what: str) -> None:
        if size > self.limits.max_object_bytes:
            raise SnapshotError(
                f"the pack holds a {what} of {_mib(size)}, over the "
                f"{_mib(self.limits.max_object_bytes)} limit per object"
            )
        self.declared += size
        if self.declared > self.limits.max_inflated_bytes:
            raise SnapshotError(
                f"the pack inflates to more than {_mib(self.limits.max_inflated_bytes)}"
            )

    def _inflate(self) -> bool:
        data = bytes(self._pending)
        self._pending.clear()
        stream = self._stream
        try:
            while data and not stream.eof:
                out = stream.decompress(data, _STEP)
                self._inflated(out)
                data = stream.unconsumed_tail
        except zlib.error:
            raise SnapshotError("the pack holds corrupt compressed data") from None
        if not stream.eof:
            return False
        if self._produced != self._size or self._delta_head is not None:
            raise SnapshotError("an object of the pack does not have the size it declares")
        self._pending += stream.unused_data
        self._stream = None
        self._objects_left = (self._objects_left or 0) - 1
        return True

    def _inflated(self, out: bytes) -> None:
        self._produced += len(out)
        if self._produced > self._size:
            raise SnapshotError("an object of the pack inflates past the size it declares")
        if self._delta_head is not None:
            self._delta_head += out[:32]
            base = _varint(self._delta_head, 0)
            result = _varint(self._delta_head, base[1]) if base is not None else None
            if result is not None:
                self._declare(result[0], "delta result")
                self._delta_head = None
            elif len(self._delta_head) >= 20 or self._produced == self._size:
                raise SnapshotError("the pack holds a malformed delta")


def fetch_pack(
    client: Any,
    path: str,
    repo: Any,
    determine_wants: Callable[..., list[bytes]],
    limits: Limits,
) -> None:
    """Fetch (depth 1) into ``repo``, metering the pack as it downloads; the pack reaches the
    object store only when it passed every limit, and nothing of a refused one stays."""
    meter = PackMeter(limits)
    with tempfile.TemporaryFile(prefix="incoming-", dir=repo.object_store.path) as spool:

        def receive(data: bytes) -> None:
            meter.feed(data)  # raises, which aborts the download mid-way
            spool.write(data)

        result = client.fetch_pack(path, determine_wants, repo.get_graph_walker(), receive, depth=1)
        if spool.tell():
            meter.finish()
            spool.seek(0)
            repo.object_store.add_thin_pack(spool.read, None)
    repo.update_shallow(result.new_shallow, result.new_unshallow)


# -- reading ---------------------------------------------------------------------------------


def _loose_size(store: Any, hexsha: str) -> int | None:
    path = f"{store.path}/{hexsha[:2]}/{hexsha[2:]}"
    try:
        with open(path, "rb") as file:  # noqa: PTH123 - a plain read of a few bytes
            head = zlib.decompressobj().decompress(file.read(512), 64)
    except FileNotFoundError:
        return None
    except zlib.error:
        raise SnapshotError("a loose object is corrupt") from None
    kind, _, rest = head.partition(b" ")
    size = rest.split(b"\0", 1)[0]
    if kind != b"blob" or not size.isdigit():
        return -1  # not a blob
    return int(size)


def _packed_size(store: Any, raw_sha: bytes) -> int | None:
    for pack in store.packs:
        try:
            offset = pack.index.object_offset(raw_sha)
        except KeyError:
            continue
        with open(pack.data.path, "rb") as file:  # noqa: PTH123 - a seek and a small read
            file.seek(offset)
            head = file.read(512)
        end = next((i + 1 for i in range(min(len(head), 10)) if not head[i] & 0x80), None)
        if end is None:
            raise SnapshotError("a packed object has a malformed header")
        kind = (head[0] >> 4) & 7
        size = head[0] & 0x0F
        for index in range(1, end):
            size |= (head[index] & 0x7F) << (4 + 7 * (index - 1))
        if kind == 3:
            return size
        if kind not in (OFS_DELTA, REF_DELTA):
            return -1
        try:
            if kind == OFS_DELTA:
                while head[end] & 0x80:
                    end += 1
                end += 1
            else:
                end += _SHA1_BYTES
            delta = zlib.decompressobj().decompress(head[end:], 32)
        except (IndexError, zlib.error):
            raise SnapshotError("a packed object is corrupt") from None
        base = _varint(delta, 0)
        result = _varint(delta, base[1]) if base is not None else None
        if result is None:
            raise SnapshotError("a packed delta is malformed")
        return result[0]  # a delta's type is its base's: read_snapshot checks it is a blob
    return None


def blob_size(store: Any, sha: bytes) -> int:
    """The size of the blob ``sha`` from its header, nothing inflated past it; -1 when the
    object is not a blob (a delta's type is known only once resolved: its result size is
    returned, and the caller checks the type when it reads it)."""
    raw = bytes.fromhex(sha.decode("ascii"))
    size = _packed_size(store, raw)
    if size is None:
        size = _loose_size(store, sha.decode("ascii"))
    if size is None:
        raise SnapshotError("the fetched repository lacks an object its tree names")
    return size


def _walk(
    repo: Any, tree: Tree, prefix: str, budget: list[int]
) -> Iterator[tuple[str, int, bytes]]:
    for entry in tree.iteritems():
        budget[0] -= 1
        if budget[0] < 0:
            return
        path = f"{prefix}{entry.path.decode('utf-8', 'replace')}"
        if stat.S_ISDIR(entry.mode):
            subtree = repo.object_store[entry.sha]
            if isinstance(subtree, Tree):
                yield from _walk(repo, subtree, path + "/", budget)
        else:
            yield path, entry.mode, entry.sha


def read_snapshot(repo: Any, head: bytes, wanted: tuple[str, ...], limits: Limits) -> Snapshot:
    """The files of ``head`` whose names end with ``wanted``, within the read limits."""
    commit = repo.object_store[head]
    if not isinstance(commit, Commit):
        raise SnapshotError("the branch head is not a commit")
    tree = repo.object_store[commit.tree]
    if not isinstance(tree, Tree):
        raise SnapshotError("the commit has no tree")
    files: list[tuple[str, bytes]] = []
    skipped: list[str] = []
    contents: dict[bytes, bytes] = {}  # each distinct blob is read (and counted) once
    budget = limits.max_read_bytes
    entries = [limits.max_tree_entries]
    for path, mode, sha in _walk(repo, tree, "", entries):
        if not path.endswith(wanted):
            continue
        if stat.S_ISLNK(mode) or mode == SUBMODULE_MODE:
            skipped.append(f"{path} (link or submodule, not followed)")
            continue
        if len(files) >= limits.max_files:
            skipped.append(f"{path} (over {limits.max_files} files)")
            continue
        if sha in contents:
            files.append((path, contents[sha]))
            continue
        size = blob_size(repo.object_store, sha)
        if size < 0:
            continue
        if size > limits.max_blob_bytes:
            skipped.append(f"{path} (larger than {limits.max_blob_bytes} bytes)")
            continue
        if size > budget:
            skipped.append(f"{path} (over the {_mib(limits.max_read_bytes)} read per sync)")
            continue
        blob = repo.object_store[sha]
        if not isinstance(blob, Blob):
            continue
        budget -= size
        contents[sha] = blob.as_raw_string()
        files.append((path, contents[sha]))
    if entries[0] < 0:
        skipped.append(f"(tree walk stopped after {limits.max_tree_entries} entries)")
    return Snapshot(head.decode(), files, skipped)
