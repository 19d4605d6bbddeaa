"""Git sync against hostile repositories over real transports: what a sync may cost is bounded.

The repositories are made here; the servers are loopback ones (dulwich over HTTPS in a thread,
OpenSSH's sshd running Git's own ``git-upload-pack``). The fetch is the product's
``fetch_snapshot``; where memory is the point, it runs in a subprocess whose peak RSS is read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dulwich import porcelain
from kubernetes import client

from gitfixtures import (
    AUTHOR,
    PUBLIC_FORMAT,
    PUBLIC_FORMAT_TEMPLATES,
    https_git_server,
    make_repo,
    ssh_git_server,
)
from streamspace.catalog.git import Credentials, RepositoryError, fetch_snapshot
from streamspace.catalog.netguard import NetworkGuard
from streamspace.catalog.parse import Limits
from streamspace.db.migrate import migrate
from streamspace_dev.process import wait_until
from streamspace_testing import Objects

pytestmark = pytest.mark.integration

MiB = 2**20
PASSWORD = "limits-Pa55word"


def test_a_pack_over_the_cap_is_aborted_while_it_downloads(tmp_path: Path) -> None:
    git = make_repo(tmp_path / "big", PUBLIC_FORMAT)
    # 48 MiB that does not compress much (base64 of random bytes), in blobs under the object cap
    for i in range(8):
        blob = base64.b64encode(os.urandom(6 * MiB // 4 * 3))
        (git.path / f"assets/{i}.bin").parent.mkdir(exist_ok=True)
        (git.path / f"assets/{i}.bin").write_bytes(blob)
    porcelain.add(str(git.path), paths=[str(p) for p in (git.path / "assets").iterdir()])
    porcelain.commit(str(git.path), message=b"assets", author=AUTHOR, committer=AUTHOR)
    work = tmp_path / "work"
    limits = Limits(max_repository_bytes=2 * MiB)
    with https_git_server({"big.git": git.path}, tmp_path, "alice", PASSWORD) as server:
        with pytest.raises(RepositoryError, match="larger than 2 MiB packed"):
            fetch_snapshot(
                f"{server.base_url}/big.git",
                "main",
                work,
                Credentials("basic", username="alice", password=PASSWORD),
                repository_id="big",
                allow_local=False,
                ca_bundle=server.ca_bundle,
                limits=limits,
                guard=NetworkGuard(allow_private=True),  # a loopback server
            )
        pack_response = max(server.sent)
    # The client hung up after ~2 MiB: the server got rid of far less than the 36+ MiB pack
    # (what it sent beyond 2 MiB sat in socket buffers when the connection closed).
    assert pack_response < 24 * MiB, pack_response
    assert not list(work.glob("*/objects/pack/*.pack"))  # nothing of it was kept
    assert not list(work.glob("*/objects/incoming-*"))


def zero_bomb_repo(path: Path, size: int) -> None:
    """A Git repository (made with git itself) whose one file is ``size`` zeros: the loose
    object is written here in 1 MiB steps, and git is told to stream it when serving."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "config", "core.bigFileThreshold", "1m"], check=True)
    header = f"blob {size}\0".encode()
    digest = hashlib.sha1(header)  # noqa: S324 - Git's object id
    stream = zlib.compressobj()
    target = path / ".git/objects/tmp-bomb"
    with target.open("wb") as file:
        file.write(stream.compress(header))
        for _ in range(size // MiB):
            chunk = bytes(MiB)
            digest.update(chunk)
            file.write(stream.compress(chunk))
        file.write(stream.flush())
    sha = digest.hexdigest()
    (path / ".git/objects" / sha[:2]).mkdir(exist_ok=True)
    target.rename(path / ".git/objects" / sha[:2] / sha[2:])
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for args in (
        ["update-index", "--add", "--cacheinfo", f"100644,{sha},zeros.yaml"],
        ["commit", "-q", "-m", "zeros"],
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)


# The peak is VmHWM, this process's own high-water mark: ru_maxrss would also count the
# parent's memory, inherited across the fork and exec that started it.
FETCH_IN_A_SUBPROCESS = """
import json, re, sys
from pathlib import Path
from streamspace.catalog.git import Credentials, RepositoryError, fetch_snapshot
from streamspace.catalog.netguard import NetworkGuard
args = json.loads(sys.argv[1])
creds = Credentials("ssh", ssh_private_key=args["key"], known_hosts=args["known_hosts"])
try:
    fetch_snapshot(args["url"], "main", Path(args["work"]), creds, repository_id="bomb",
                   allow_local=False, guard=NetworkGuard(allow_private=True))
    outcome = "fetched"
except RepositoryError as exc:
    outcome = str(exc)
status = Path("/proc/self/status").read_text()
peak = int(re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1))
print(json.dumps({"outcome": outcome, "peak_kib": peak}))
"""


def test_a_zero_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    """400 MiB of zeros (a ~400 KiB pack) over ssh from git-upload-pack: refused from the
    object header, the fetching process never holds more than a small part of it."""
    zero_bomb_repo(tmp_path / "bomb", 400 * MiB)
    with ssh_git_server(tmp_path / "sshd") as server:
        args = {
            "url": server.url(tmp_path / "bomb"),
            "key": server.private_key,
            "known_hosts": server.known_hosts,
            "work": str(tmp_path / "work"),
        }
        done = subprocess.run(
            [sys.executable, "-c", FETCH_IN_A_SUBPROCESS, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "a blob of 400 MiB, over the 16 MiB limit per object" in result["outcome"], result
    # An interpreter with dulwich and our modules: well under 150 MiB; inflating: over 400.
    assert result["peak_kib"] < 150 * 1024, result


ALIAS_BOMB = (
    "apiVersion: stream.space/v1alpha1\nkind: Template\nmetadata: {name: bomb}\n"
    "spec:\n  displayName: Bomb\n  baseImage: bomb:1\n  env:\n"
    "    l0: &l0 [xxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxx]\n"
    + "".join(
        f"    l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]\n" for i in range(1, 12)
    )
)


def test_an_alias_bomb_in_a_repository_is_reported_and_never_stored(
    api: client.ApiClient,
    namespace: str,
    database: str,
    start_operator: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The real operator syncs a repository holding a 4**12-string alias bomb next to good
    templates: the bomb is a reported problem, the rest of the catalog is stored."""
    migrate(database)
    git = make_repo(tmp_path / "templates", {**PUBLIC_FORMAT, "evil/bomb.yaml": ALIAS_BOMB})
    start_operator(
        DATABASE_URL=database, ALLOW_LOCAL_REPOS="true", SYNC_WORK_DIR=str(tmp_path / "work")
    )
    objects = Objects(api, namespace)
    objects.create("templaterepositories", "bombed", {"url": git.url})

    def status() -> dict[str, Any]:
        return dict((objects.get("templaterepositories", "bombed") or {}).get("status") or {})

    assert wait_until(lambda: status().get("phase") == "Ready", 60), status()
    expected = "evil/bomb.yaml: larger than 262144 bytes once aliases expand"
    assert expected in status()["message"], status()
    assert status()["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
    with psycopg.connect(database) as conn:
        names = {n for (n,) in conn.execute("SELECT name FROM catalog_templates").fetchall()}
        largest = conn.execute("SELECT max(pg_column_size(manifest)) FROM catalog_templates")
        (size,) = largest.fetchone() or (0,)
    assert names == PUBLIC_FORMAT_TEMPLATES
    assert size < 4096
