"""Fetching a repository's files with dulwich: shallow, bare, no checkout, hostile input assumed.

Blocking (call it through ``asyncio.to_thread``). The URL is checked first: ``https`` and ``ssh``
only, ``file://`` and local paths only when explicitly allowed, no credentials inside URLs, no
option-looking hosts. The branch head is fetched with depth 1 into a bare repository under the
work directory (later syncs fetch into the same one and move to the new head); files are read
from the object store, never written out. Symlinks and submodules are skipped, and blob size and
file count are capped. Error messages never contain credentials.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dulwich.client import (
    SSHGitClient,
    SSHVendor,
    SubprocessSSHVendor,
    get_transport_and_path,
)
from dulwich.config import ConfigDict
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from streamspace.catalog.parse import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

SUBMODULE_MODE = 0o160000
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")


class RepositoryError(RuntimeError):
    """The repository could not be synced; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class Credentials:
    """From the TemplateRepository's Secret; ``repr`` shows the kind only."""

    kind: str = "none"  # none | token | basic | ssh
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    known_hosts: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.ssh_private_key) if s]


@dataclass(frozen=True)
class Snapshot:
    commit: str
    files: list[tuple[str, bytes]]
    skipped: list[str]  # symlinks, submodules, oversized blobs (paths only)


def normalize_url(url: str, allow_local: bool) -> str:
    """The URL to fetch from, or RepositoryError saying why it is refused."""
    url = url.strip()
    scp = _SCP_LIKE.match(url)
    if scp:
        url = f"ssh://{scp['user']}@{scp['host']}/{scp['path']}"
    if url.startswith("/") or url.startswith("file://"):
        if not allow_local:
            raise RepositoryError(
                "local repositories are disabled (set ALLOW_LOCAL_REPOS=true for development)"
            )
        path = url.removeprefix("file://")
        if not path.startswith("/") or "\x00" in path:
            raise RepositoryError("a local repository needs an absolute path")
        return "file://" + path
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise RepositoryError(f"the URL cannot be parsed: {exc}") from None
    if parts.scheme not in ("https", "ssh"):
        raise RepositoryError(
            f"URL scheme {parts.scheme or '(none)'!r} is not allowed; use https:// or ssh://"
        )
    if " " in url or not url.isprintable():
        raise RepositoryError("the URL contains spaces or control characters")
    if parts.password is not None or (parts.scheme == "https" and parts.username is not None):
        raise RepositoryError("credentials in the URL are not accepted; use auth.secretRef")
    host = parts.hostname or ""
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise RepositoryError("the URL names no valid host")
    return url


def _repo_dir(work_dir: Path, repository_id: str, url: str, branch: str) -> Path:
    """One bare repository per TemplateRepository object, URL and branch: never shared."""
    digest = hashlib.sha256(f"{repository_id}\x00{url}\x00{branch}".encode()).hexdigest()[:24]
    return work_dir / digest


def _ssh_command(creds: Credentials, directory: Path) -> str:
    """Write the key and known hosts into ``directory`` (private, removed after the fetch)."""
    if not creds.ssh_private_key or not creds.known_hosts:
        raise RepositoryError("ssh auth needs the Secret keys ssh-privatekey and known_hosts")
    key, hosts = directory / "id", directory / "known_hosts"
    key.write_text(creds.ssh_private_key.rstrip("\n") + "\n")
    key.chmod(0o600)
    hosts.write_text(creds.known_hosts)
    return " ".join(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={shlex.quote(str(hosts))}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=20",
            "-i",
            shlex.quote(str(key)),
        ]
    )


class _TrackingSSHVendor(SubprocessSSHVendor):
    """Runs ssh like dulwich does, and makes sure no ssh process outlives its fetch."""

    def __init__(self) -> None:
        self.wrappers: list[Any] = []

    def run_command(self, *args: Any, **kwargs: Any) -> Any:
        wrapper = super().run_command(*args, **kwargs)
        self.wrappers.append(wrapper)
        return wrapper

    def reap(self) -> None:
        for wrapper in self.wrappers:
            proc = wrapper.proc
            if proc.poll() is None:
                proc.kill()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            proc.wait()


def _client(target: str, vendor: SSHVendor, kwargs: dict[str, Any]) -> tuple[Any, str]:
    if target.startswith("ssh://"):
        parts = urlsplit(target)
        client = SSHGitClient(
            parts.hostname or "",
            port=parts.port,
            username=parts.username,
            vendor=vendor,
            config=kwargs["config"],
            ssh_command=kwargs.get("ssh_command"),
        )
        return client, parts.path
    return get_transport_and_path(target, **kwargs)


def _client_config(ca_bundle: Path | None) -> ConfigDict:
    config = ConfigDict()
    config.set((b"http",), b"timeout", b"60")
    if ca_bundle is not None:
        config.set((b"http",), b"sslCAInfo", str(ca_bundle).encode())
    return config


def _client_options(creds: Credentials, ca_bundle: Path | None, auth_dir: Path) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"config": _client_config(ca_bundle)}
    if creds.kind in ("token", "basic"):
        if not creds.password:
            raise RepositoryError(f"{creds.kind} auth needs a password or token in the Secret")
        kwargs["username"] = creds.username or "x-access-token"
        kwargs["password"] = creds.password
    elif creds.kind == "ssh":
        kwargs["ssh_command"] = _ssh_command(creds, auth_dir)
    return kwargs


def _scrub(message: str, creds: Credentials) -> str:
    for secret in creds.secrets():
        message = message.replace(secret, "***")
    return message


def _walk(repo: Any, tree: Tree, prefix: str) -> Iterator[tuple[str, int, bytes]]:
    for entry in tree.iteritems():
        path = f"{prefix}{entry.path.decode('utf-8', 'replace')}"
        if stat.S_ISDIR(entry.mode):
            subtree = repo.object_store[entry.sha]
            if isinstance(subtree, Tree):
                yield from _walk(repo, subtree, path + "/")
        else:
            yield path, entry.mode, entry.sha


def fetch_snapshot(
    url: str,
    branch: str,
    work_dir: Path,
    creds: Credentials,
    *,
    repository_id: str,
    allow_local: bool,
    ca_bundle: Path | None = None,
    wanted: tuple[str, ...] = (".yaml", ".yml"),
    limits: Limits = DEFAULT_LIMITS,
) -> Snapshot:
    """Fetch ``branch`` (depth 1) and read the files whose names end with ``wanted``."""
    target = normalize_url(url, allow_local)
    work_dir.mkdir(parents=True, exist_ok=True)
    # Key material lives in a private directory for the length of one fetch only.
    with tempfile.TemporaryDirectory(prefix="auth-", dir=work_dir) as auth_dir:
        kwargs = _client_options(creds, ca_bundle, Path(auth_dir))
        try:
            repo_dir = _repo_dir(work_dir, repository_id, target, branch)
            return _fetch(target, branch, repo_dir, kwargs=kwargs, wanted=wanted, limits=limits)
        except RepositoryError:
            raise
        except Exception as exc:  # hostile remotes: every failure becomes one error
            log.debug("fetch of %s failed", target, exc_info=True)
            detail = _scrub(str(exc) or type(exc).__name__, creds)
            raise RepositoryError(f"fetch failed: {detail}") from None


def _fetch(
    target: str,
    branch: str,
    directory: Path,
    *,
    kwargs: dict[str, Any],
    wanted: tuple[str, ...],
    limits: Limits,
) -> Snapshot:
    ref = f"refs/heads/{branch}".encode()

    def wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
        if ref not in refs:
            raise RepositoryError(f"branch {branch!r} not found")
        return [refs[ref]]

    vendor = _TrackingSSHVendor()
    client, path = _client(target, vendor, kwargs)
    try:
        advertised = client.get_refs(path)
        remote: dict[Any, Any] = dict(getattr(advertised, "refs", advertised))
        head = remote.get(ref)
        if head is None:
            raise RepositoryError(f"branch {branch!r} not found")
        if directory.exists():
            existing: Any = Repo(str(directory))
            with existing as repo:
                if repo.refs.as_dict().get(ref) == head:
                    return _read(repo, head, wanted, limits)  # nothing new: no fetch at all
            # Something new: a fresh shallow fetch (re-deepening shallow clones is fragile).
            shutil.rmtree(directory)
        fresh: Any = Repo.init_bare(str(directory), mkdir=True)
        with fresh as repo:
            client.fetch(path, repo, determine_wants=wants, depth=1)
            repo.refs[ref] = head
            pack_dir = directory / "objects" / "pack"
            packed = sum(p.stat().st_size for p in pack_dir.glob("*.pack"))
            if packed > limits.max_repository_bytes:
                megabytes = limits.max_repository_bytes // 2**20
                raise RepositoryError(f"repository is larger than {megabytes} MiB packed")
            return _read(repo, head, wanted, limits)
    finally:
        client.close()
        manager = getattr(client, "pool_manager", None)
        if manager is not None:
            # dulwich's https client leaves its urllib3 pools (and TLS sockets) open, and
            # urllib3 2's PoolManager.clear() only forgets them: close each
            for key in manager.pools.keys():  # noqa: SIM118 - the container cannot be iterated
                manager.pools[key].close()
            manager.clear()
        vendor.reap()


def _read(repo: Any, head: bytes, wanted: tuple[str, ...], limits: Limits) -> Snapshot:
    commit = repo.object_store[head]
    if not isinstance(commit, Commit):
        raise RepositoryError("the branch head is not a commit")
    tree = repo.object_store[commit.tree]
    if not isinstance(tree, Tree):
        raise RepositoryError("the commit has no tree")
    files: list[tuple[str, bytes]] = []
    skipped: list[str] = []
    for path, mode, sha in _walk(repo, tree, ""):
        if not path.endswith(wanted):
            continue
        if stat.S_ISLNK(mode) or mode == SUBMODULE_MODE:
            skipped.append(f"{path} (link or submodule, not followed)")
            continue
        if len(files) >= limits.max_files:
            skipped.append(f"{path} (over {limits.max_files} files)")
            continue
        blob = repo.object_store[sha]
        if not isinstance(blob, Blob):
            continue
        if blob.raw_length() > limits.max_blob_bytes:
            skipped.append(f"{path} (larger than {limits.max_blob_bytes} bytes)")
            continue
        files.append((path, blob.as_raw_string()))
    return Snapshot(head.decode(), files, skipped)
