"""Fetching a repository's files with dulwich: shallow, bare, no checkout, hostile input assumed.

Blocking (call it through ``asyncio.to_thread``). The URL is checked first: ``https`` and ``ssh``
only, ``file://`` and local paths only when explicitly allowed, no credentials inside URLs, no
option-looking hosts. The branch head is fetched with depth 1 into a bare repository under the
work directory (later syncs fetch into the same one and move to the new head); files are read
from the object store, never written out. Symlinks and submodules are skipped. What a fetch may
cost is bounded while the pack downloads and before any object is inflated
(``streamspace.catalog.objects``). Error messages never contain credentials.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dulwich.client import (
    HTTPUnauthorized,
    SSHGitClient,
    SSHVendor,
    SubprocessSSHVendor,
    Urllib3HttpGitClient,
    get_transport_and_path,
)
from dulwich.config import ConfigDict
from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.repo import Repo

from streamspace.catalog.errors import (
    AUTH_FAILED_MESSAGE,
    FETCH_FAILED_MESSAGE,
    NOT_FOUND_MESSAGE,
    Reason,
    RepositoryError,
)
from streamspace.catalog.netguard import (
    NetworkGuard,
    Pinned,
    guarded_pool_manager,
    ssh_pin_options,
)
from streamspace.catalog.objects import (
    SUBMODULE_MODE,
    Snapshot,
    SnapshotError,
    fetch_pack,
    read_snapshot,
)
from streamspace.catalog.parse import DEFAULT_LIMITS, Limits

__all__ = [
    "SUBMODULE_MODE",
    "Credentials",
    "RepositoryError",
    "Snapshot",
    "fetch_snapshot",
    "normalize_url",
]

log = logging.getLogger(__name__)

_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")


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


def normalize_url(url: str, allow_local: bool) -> str:
    """The URL to fetch from, or RepositoryError saying why it is refused."""
    url = url.strip()
    scp = _SCP_LIKE.match(url)
    if scp:
        url = f"ssh://{scp['user']}@{scp['host']}/{scp['path']}"
    if url.startswith("/") or url.startswith("file://"):
        if not allow_local:
            raise RepositoryError(
                "local repositories are disabled (set ALLOW_LOCAL_REPOS=true for development)",
                Reason.INVALID_URL,
            )
        path = url.removeprefix("file://")
        if not path.startswith("/") or "\x00" in path:
            raise RepositoryError("a local repository needs an absolute path", Reason.INVALID_URL)
        return "file://" + path
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise RepositoryError(f"the URL cannot be parsed: {exc}", Reason.INVALID_URL) from None
    if parts.scheme not in ("https", "ssh"):
        raise RepositoryError(
            f"URL scheme {parts.scheme or '(none)'!r} is not allowed; use https:// or ssh://",
            Reason.INVALID_URL,
        )
    if " " in url or not url.isprintable():
        raise RepositoryError("the URL contains spaces or control characters", Reason.INVALID_URL)
    if parts.password is not None or (parts.scheme == "https" and parts.username is not None):
        raise RepositoryError(
            "credentials in the URL are not accepted; use auth.secretRef", Reason.INVALID_URL
        )
    host = parts.hostname or ""
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise RepositoryError("the URL names no valid host", Reason.INVALID_URL)
    return url


def _repo_dir(work_dir: Path, repository_id: str, url: str, branch: str) -> Path:
    """One bare repository per TemplateRepository object, URL and branch: never shared."""
    digest = hashlib.sha256(f"{repository_id}\x00{url}\x00{branch}".encode()).hexdigest()[:24]
    return work_dir / digest


def _ssh_command(creds: Credentials, directory: Path, pinned: Pinned) -> str:
    """ssh for one fetch: no user config, host key checked for the URL's host name while the
    connection goes to the pinned address; the key and known hosts (ssh auth) are written into
    ``directory`` (private, removed after the fetch)."""
    options = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=20",
        *ssh_pin_options(pinned),
    ]
    if creds.kind != "ssh":
        return " ".join(shlex.quote(option) for option in options)
    if not creds.ssh_private_key or not creds.known_hosts:
        raise RepositoryError(
            "ssh auth needs the Secret keys ssh-privatekey and known_hosts",
            Reason.CREDENTIAL_REFUSED,
        )
    key, hosts = directory / "id", directory / "known_hosts"
    key.write_text(creds.ssh_private_key.rstrip("\n") + "\n")
    key.chmod(0o600)
    hosts.write_text(creds.known_hosts)
    options += [
        "-o",
        f"UserKnownHostsFile={hosts}",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        str(key),
    ]
    return " ".join(shlex.quote(option) for option in options)


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


def _client(
    target: str, vendor: SSHVendor, kwargs: dict[str, Any], pinned: Pinned | None
) -> tuple[Any, str]:
    """A dulwich client that connects only to the pinned address (https and ssh)."""
    parts = urlsplit(target)
    if parts.scheme == "ssh" and pinned is not None:
        client = SSHGitClient(
            pinned.address,
            port=parts.port,
            username=parts.username,
            vendor=vendor,
            config=kwargs["config"],
            ssh_command=kwargs["ssh_command"],
        )
        return client, parts.path
    if parts.scheme == "https" and pinned is not None:
        return Urllib3HttpGitClient(target, **kwargs), parts.path
    if parts.scheme == "file":
        return get_transport_and_path(target, config=kwargs["config"])
    raise RepositoryError("the URL was not checked", Reason.INVALID_URL)  # unreachable


def _client_options(
    creds: Credentials,
    auth_dir: Path,
    pinned: Pinned | None,
    guard: NetworkGuard,
    ca_bundle: Path | None,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"config": ConfigDict()}
    if creds.kind in ("token", "basic"):
        if not creds.password:
            raise RepositoryError(
                f"{creds.kind} auth needs a password or token in the Secret",
                Reason.CREDENTIAL_REFUSED,
            )
        kwargs["username"] = creds.username or "x-access-token"
        kwargs["password"] = creds.password
    if pinned is not None and pinned.scheme == "ssh":
        kwargs["ssh_command"] = _ssh_command(creds, auth_dir, pinned)
    elif pinned is not None:
        kwargs["pool_manager"] = guarded_pool_manager(guard, pinned, ca_bundle)
    return kwargs


def _classified(exc: Exception) -> RepositoryError:
    """A failure of the remote side as a category with a fixed message (never its text)."""
    if isinstance(exc, HTTPUnauthorized):
        return RepositoryError(AUTH_FAILED_MESSAGE, Reason.AUTH_FAILED)
    if isinstance(exc, NotGitRepository):
        return RepositoryError(NOT_FOUND_MESSAGE, Reason.NOT_FOUND)
    if isinstance(exc, GitProtocolError) and re.search(r"\bresp 403\b", str(exc)):
        return RepositoryError(AUTH_FAILED_MESSAGE, Reason.AUTH_FAILED)
    return RepositoryError(FETCH_FAILED_MESSAGE, Reason.FETCH_FAILED)


def _scrub(message: str, creds: Credentials) -> str:
    for secret in creds.secrets():
        message = message.replace(secret, "***")
    return message


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
    guard: NetworkGuard | None = None,
) -> Snapshot:
    """Fetch ``branch`` (depth 1) and read the files whose names end with ``wanted``.

    ``guard`` decides where connections may go (default: no private networks).
    """
    target = normalize_url(url, allow_local)
    guard = guard or NetworkGuard()
    pinned = None if target.startswith("file://") else guard.pin(target)
    work_dir.mkdir(parents=True, exist_ok=True)
    # Key material lives in a private directory for the length of one fetch only.
    with tempfile.TemporaryDirectory(prefix="auth-", dir=work_dir) as auth_dir:
        kwargs = _client_options(creds, Path(auth_dir), pinned, guard, ca_bundle)
        try:
            repo_dir = _repo_dir(work_dir, repository_id, target, branch)
            return _fetch(
                target, branch, repo_dir, kwargs=kwargs, pinned=pinned, wanted=wanted, limits=limits
            )
        except RepositoryError:
            raise
        except Exception as exc:  # hostile remotes: every failure becomes one error
            # The details (remote text included) go to the debug log only, scrubbed.
            log.debug("fetch of %s failed: %s", target, _scrub(repr(exc), creds))
            raise _classified(exc) from None


def _fetch(
    target: str,
    branch: str,
    directory: Path,
    *,
    kwargs: dict[str, Any],
    pinned: Pinned | None,
    wanted: tuple[str, ...],
    limits: Limits,
) -> Snapshot:
    ref = f"refs/heads/{branch}".encode()

    def wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
        if ref not in refs:
            raise RepositoryError(f"branch {branch!r} not found", Reason.NOT_FOUND)
        return [refs[ref]]

    vendor = _TrackingSSHVendor()
    client, path = _client(target, vendor, kwargs, pinned)
    try:
        advertised = client.get_refs(path)
        remote: dict[Any, Any] = dict(getattr(advertised, "refs", advertised))
        head = remote.get(ref)
        if head is None:
            raise RepositoryError(f"branch {branch!r} not found", Reason.NOT_FOUND)
        if directory.exists():
            existing: Any = Repo(str(directory))
            with existing as repo:
                if repo.refs.as_dict().get(ref) == head:
                    return _read(repo, head, wanted, limits)  # nothing new: no fetch at all
            # Something new: a fresh shallow fetch (re-deepening shallow clones is fragile).
            shutil.rmtree(directory)
        fresh: Any = Repo.init_bare(str(directory), mkdir=True)
        with fresh as repo:
            try:
                fetch_pack(client, path, repo, wants, limits)  # metered while it downloads
            except SnapshotError as exc:
                raise RepositoryError(str(exc)) from None
            repo.refs[ref] = head
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
    try:
        return read_snapshot(repo, head, wanted, limits)
    except SnapshotError as exc:
        raise RepositoryError(str(exc)) from None
