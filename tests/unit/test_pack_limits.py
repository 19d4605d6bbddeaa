"""What a fetched pack may cost: metered as it arrives, sizes from headers, blobs read once.

The hostile packs are written here byte by byte (a 400 MiB blob of zeros compresses to ~400 KiB
and is produced in 1 MiB steps), so nothing large is ever held, by the test or the code under
test: ``tracemalloc``'s peak shows what was built.
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import zlib
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.pack import PackData, write_pack_objects
from dulwich.repo import Repo

from gitfixtures import template_yaml
from streamspace.catalog.objects import (
    OFS_DELTA,
    PackMeter,
    SnapshotError,
    blob_size,
    read_snapshot,
)
from streamspace.catalog.parse import Limits

pytestmark = pytest.mark.unit

BOMB = 400 * 2**20  # bytes of zeros
MiB = 2**20


def object_header(kind: int, size: int) -> bytes:
    out = []
    first = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(first | 0x80)
        first, size = size & 0x7F, size >> 7
    out.append(first)
    return bytes(out)


def varint(value: int) -> bytes:
    out = []
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def zeros(total: int, prefix: bytes = b"") -> Iterator[bytes]:
    """zlib of ``prefix`` and ``total`` zero bytes, in pieces, never more than 1 MiB held."""
    stream = zlib.compressobj()
    yield stream.compress(prefix)
    left = total
    while left:
        step = min(MiB, left)
        yield stream.compress(bytes(step))
        left -= step
    yield stream.flush()


def pack_header(count: int) -> bytes:
    return b"PACK" + (2).to_bytes(4, "big") + count.to_bytes(4, "big")


def feed_all(meter: PackMeter, pieces: Iterator[bytes]) -> int:
    """Feed until the meter refuses; how many pieces it took."""
    fed = 0
    for piece in pieces:
        fed += 1
        meter.feed(piece)
    return fed


def peak_of(run: object) -> int:
    tracemalloc.start()
    try:
        assert callable(run)
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_zero_bomb_is_refused_from_its_header_before_inflating() -> None:
    meter = PackMeter(Limits())
    pieces = chain([pack_header(1) + object_header(3, BOMB)], zeros(BOMB))
    with pytest.raises(SnapshotError, match="a blob of 400 MiB, over the 16 MiB limit"):
        feed_all(meter, pieces)
    assert meter.received < 64  # refused on the header: not one compressed byte was needed


def test_a_header_that_lies_is_caught_after_inflating_no_more_than_it_declared() -> None:
    meter = PackMeter(Limits())
    pieces = chain([pack_header(1) + object_header(3, 1000)], zeros(BOMB))

    def run() -> None:
        with pytest.raises(SnapshotError, match="inflates past the size it declares"):
            feed_all(meter, pieces)

    assert peak_of(run) < 8 * MiB
    assert meter.received < 2 * MiB  # stopped within the first pieces of the stream


def test_a_delta_is_judged_by_the_size_of_its_result() -> None:
    # A tiny delta that claims to build 400 MiB from a 10-byte base.
    delta = varint(10) + varint(BOMB) + b"\x01x"
    compressed = zlib.compress(delta)
    data = pack_header(2) + object_header(3, 10) + zlib.compress(b"0123456789")
    data += object_header(OFS_DELTA, len(delta)) + b"\x0c" + compressed
    with pytest.raises(SnapshotError, match="delta result of 400 MiB"):
        PackMeter(Limits()).feed(data)


@pytest.mark.parametrize(
    ("limits", "data", "message"),
    [
        (Limits(), pack_header(10**6), "holds 1000000 objects, more than 100000"),
        (Limits(), b"HTTP/1.1 200 OK\r\n", "did not send a Git pack"),
        (
            Limits(max_inflated_bytes=MiB),
            pack_header(3) + object_header(3, MiB // 2),
            None,  # half the budget: still fine
        ),
        (Limits(max_repository_bytes=100), pack_header(1) + bytes(100), "larger than"),
    ],
)
def test_pack_wide_limits(limits: Limits, data: bytes, message: str | None) -> None:
    meter = PackMeter(limits)
    if message is None:
        meter.feed(data)
        return
    with pytest.raises(SnapshotError, match=message):
        meter.feed(data)


def test_declared_sizes_add_up_to_the_budget() -> None:
    meter = PackMeter(Limits(max_inflated_bytes=MiB))
    blob = zlib.compress(bytes(MiB // 2))
    data = pack_header(3) + (object_header(3, MiB // 2) + blob) * 2
    meter.feed(data)
    with pytest.raises(SnapshotError, match="inflates to more than 1 MiB"):
        meter.feed(object_header(3, 1))


def real_pack(tmp_path: Path) -> tuple[bytes, int]:
    """A pack as a server sends it (dulwich writes it, deltas included), and its blob bytes."""
    repo = Repo.init_bare(str(tmp_path / "src.git"), mkdir=True)
    base = template_yaml("firefox", "Firefox").encode() * 20
    blobs = [Blob.from_string(base), Blob.from_string(base + b"# one more line\n")]
    for blob in blobs:
        repo.object_store.add_object(blob)
    buffer = io.BytesIO()
    write_pack_objects(buffer.write, [(b, None) for b in blobs], repo.object_format, deltify=True)
    return buffer.getvalue(), sum(len(b.data) for b in blobs)


def test_a_real_pack_passes_whatever_pieces_it_arrives_in(tmp_path: Path) -> None:
    data, _ = real_pack(tmp_path)
    for size in (1, 7, 4096, len(data)):
        meter = PackMeter(Limits())
        for start in range(0, len(data), size):
            meter.feed(data[start : start + size])
        meter.finish()
        assert meter.received == len(data)


def test_an_incomplete_pack_is_refused(tmp_path: Path) -> None:
    data, _ = real_pack(tmp_path)
    meter = PackMeter(Limits())
    meter.feed(data[: len(data) // 2])
    with pytest.raises(SnapshotError, match="incomplete"):
        meter.finish()


# -- reading ---------------------------------------------------------------------------------


def write_loose_zero_blob(repo: Repo, size: int) -> bytes:
    """A loose blob of ``size`` zeros, written in 1 MiB steps; its sha."""
    header = f"blob {size}\0".encode()
    digest = hashlib.sha1(header)  # noqa: S324 - Git's object id
    left = size
    while left:
        step = min(MiB, left)
        digest.update(bytes(step))
        left -= step
    sha = digest.hexdigest()
    target = Path(repo.object_store.path) / sha[:2] / sha[2:]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as file:
        for piece in zeros(size, header):
            file.write(piece)
    return sha.encode()


def test_reading_takes_sizes_from_headers_and_each_blob_once(tmp_path: Path) -> None:
    repo = Repo.init_bare(str(tmp_path / "r.git"), mkdir=True)
    store = repo.object_store
    bomb = write_loose_zero_blob(repo, BOMB // 8)  # 50 MiB: as good a bomb, written faster
    assert blob_size(store, bomb) == BOMB // 8
    same = Blob.from_string(template_yaml("same", "Same").encode())
    other = Blob.from_string(template_yaml("other", "Other").encode() + b"#" * 4000)
    for obj in (same, other):
        store.add_object(obj)
    tree = Tree()
    tree.add(b"zeros.yaml", 0o100644, bomb)
    tree.add(b"z-other.yaml", 0o100644, other.id)
    for i in range(1200):
        tree.add(f"copy-{i:04}.yaml".encode(), 0o100644, same.id)
    store.add_object(tree)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"t <t@example.invalid>"
    commit.author_time = commit.commit_time = 0
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"m"
    store.add_object(commit)
    limits = Limits(max_read_bytes=len(same.data) + 100)
    result = []

    def run() -> None:
        result.append(read_snapshot(repo, commit.id, (".yaml",), limits))

    peak = peak_of(run)
    snapshot = result[0]
    assert peak < 16 * MiB, peak  # the 50 MiB blob was never inflated
    assert len(snapshot.files) == 1200
    assert len({id(content) for _, content in snapshot.files}) == 1  # one copy, counted once
    assert sorted(snapshot.skipped) == [
        f"z-other.yaml (over the {limits.max_read_bytes / MiB:g} MiB read per sync)",
        f"zeros.yaml (larger than {limits.max_blob_bytes} bytes)",
    ]


def test_packed_blob_sizes_come_from_pack_headers(tmp_path: Path) -> None:
    """After a real fetch the objects are packed (deltas included): sizes still from headers."""
    source = Repo.init_bare(str(tmp_path / "src.git"), mkdir=True)
    base = template_yaml("firefox", "Firefox").encode() * 20
    blobs = [Blob.from_string(base), Blob.from_string(base + b"# one more line\n")]
    for blob in blobs:
        source.object_store.add_object(blob)
    buffer = io.BytesIO()
    write_pack_objects(buffer.write, [(b, None) for b in blobs], source.object_format, deltify=True)
    types = object_types(buffer.getvalue(), source)
    assert sorted(types) == [3, OFS_DELTA], types  # one of them is a delta
    buffer.seek(0)
    with Repo.init_bare(str(tmp_path / "dst.git"), mkdir=True) as target:
        target.object_store.add_thin_pack(buffer.read, None)
        assert not list(Path(target.object_store.path).glob("??/*"))  # nothing loose
        for blob in blobs:
            assert blob_size(target.object_store, blob.id) == len(blob.data)


def object_types(pack: bytes, repo: Repo) -> list[int]:
    """The type of each object of a pack, as its headers say."""
    data = PackData.from_file(io.BytesIO(pack), repo.object_format, len(pack))
    try:
        return [unpacked.pack_type_num for unpacked in data.iter_unpacked()]
    finally:
        data.close()
