"""A throw-away PostgreSQL server on loopback, for the dev stack and the tests.

Used only when no database is configured (``DATABASE_URL`` / ``DB_*``). It runs the machine's
PostgreSQL server binaries (``pg_ctl`` on the PATH or ``/usr/lib/postgresql/<n>/bin``) with
durability switched off, listening on 127.0.0.1 only, and a password made up for each server
(SCRAM; no trust authentication, not even on its socket), kept in its state file (mode 0600).
``initdb`` refuses to run as root, so as root the server runs as ``nobody``.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from streamspace.cli import CommandError
from streamspace_dev import process

DB_NAME = "streamspace"
DB_USER = "streamspace"


class PostgresError(CommandError):
    """The throw-away server could not be found, initialised or started."""


def find_server_binaries() -> Path:
    """The directory holding ``initdb`` and ``postgres``."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    raise PostgresError(
        "no PostgreSQL server binaries found (pg_ctl, /usr/lib/postgresql/*/bin); install the "
        "'postgresql' package or set DATABASE_URL"
    )


def _world_traversable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


@dataclass
class LocalPostgres:
    """A server whose files live under ``state_dir/postgres``.

    Tuned for speed: no fsync, and commits answered before their WAL is written. Both are safe
    while the machine stays up, but the second loses the last moment's commits when the server
    itself is killed; ``crash_safe`` (fault tests kill it) writes the WAL before answering.
    """

    state_dir: Path
    crash_safe: bool = False

    @property
    def dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def _state_file(self) -> Path:
        return self.dir / "state.json"

    def _record(self, url: str, record: process.Started, data_dir: str) -> None:
        self._state_file.write_text(
            json.dumps({"url": url, "process": record.as_dict(), "data_dir": data_dir})
        )

    def _load(self) -> tuple[str, process.Started, str] | None:
        if not self._state_file.exists():
            return None
        data = json.loads(self._state_file.read_text())
        return data["url"], process.Started.from_dict(data["process"]), data["data_dir"]

    def url(self) -> str | None:
        loaded = self._load()
        if loaded and process.is_running(loaded[1]):
            return loaded[0]
        return None

    def up(self, timeout: float = 60.0) -> str:
        """Start the server (unless it runs already) and return its connection URL."""
        running = self.url()
        if running:
            return running
        self.down()
        bindir = find_server_binaries()
        self.dir.mkdir(parents=True, exist_ok=True)
        run_as = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None
        if run_as is not None and not _world_traversable(self.dir):
            data_dir = Path(tempfile.mkdtemp(prefix="streamspace-pg-"))
        else:
            data_dir = self.dir / "data"
            data_dir.mkdir()
        if run_as is not None:
            os.chown(data_dir, run_as, -1)
        data_dir.chmod(0o700)
        password = secrets.token_hex(16)
        # initdb wants the data directory empty and reads the password as the server's user.
        fd, name = tempfile.mkstemp(prefix="streamspace-pg-password-")
        pwfile = Path(name)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        if run_as is not None:
            os.chown(pwfile, run_as, -1)
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                DB_USER,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            user=run_as,
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise PostgresError(f"initdb failed:\n{initdb.stderr or initdb.stdout}")
        port = process.free_port()
        record = process.start(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(data_dir),
                "-c",
                "fsync=off",
                "-c",
                f"synchronous_commit={'on' if self.crash_safe else 'off'}",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "log_min_messages=warning",
            ],
            self.dir / "postgres.log",
            user=run_as,
        )
        url = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
        self._state_file.touch(mode=0o600)
        self._record(url, record, str(data_dir))
        admin = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/postgres"
        self._wait_ready(admin, record, timeout)
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        return url

    @staticmethod
    def _wait_ready(url: str, record: process.Started, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not process.is_running(record):
                raise PostgresError("postgres exited:\n" + process.log_tail(record))
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise PostgresError(
                        "postgres did not accept connections:\n" + process.log_tail(record)
                    ) from None
                time.sleep(0.1)
            else:
                return

    def kill(self) -> None:
        """SIGKILL the server and its backends (fault tests); its data stays for ``restart``."""
        loaded = self._load()
        if loaded is None:
            raise PostgresError("no server is recorded here")
        process.kill(loaded[1])

    def restart(self, timeout: float = 60.0) -> None:
        """Start the server again on its port and data (crash recovery runs, as after a power
        cut); return once it accepts connections."""
        loaded = self._load()
        if loaded is None:
            raise PostgresError("no server is recorded here")
        url, record, data_dir = loaded
        process.kill(record)
        record = process.restart(record)
        self._record(url, record, data_dir)
        self._wait_ready(url, record, timeout)

    def down(self) -> bool:
        """Stop the server and delete its data; False when none was running."""
        loaded = self._load()
        if loaded is None:
            return False
        _, record, data_dir = loaded
        stopped = process.stop(record)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return stopped
