"""Migrations and API keys against a real PostgreSQL."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from streamspace.auth import apikeys
from streamspace.cli import main
from streamspace.db import migrate as migrations

pytestmark = pytest.mark.integration

SPEC_TABLES = {
    "users",
    "api_keys",
    "sessions",
    "connections",
    "repositories",
    "catalog_templates",
    "configuration",
    "audit_log",
    "catalog_plugins",
    "installed_plugins",
    "plugin_ratings",
    "webhook_deliveries",
    "idempotency_keys",
    "plugin_events",  # the event outbox (0005, docs/PLUGINS.md §4)
    "plugin_deliveries",
    "session_transitions",  # usage history (0009, issue 19)
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def test_migrate_creates_the_full_schema_once(database: str) -> None:
    applied = migrations.migrate(database)
    assert [m.version for m in applied] == [m.version for m in migrations.available_migrations()]
    assert tables(database) == SPEC_TABLES | {"schema_migrations"}
    assert migrations.migrate(database) == []  # idempotent
    assert migrations.current_version(database) == applied[-1].version


def test_concurrent_migrations_apply_each_file_once(database: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(migrations.migrate, [database] * 4))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrations.available_migrations())]
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert row == (len(migrations.available_migrations()),)


def test_an_edited_migration_is_refused(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    migrations.migrate(database)
    original = migrations.available_migrations()
    edited = [migrations.Migration(original[0].version, original[0].name, "SELECT 1;")]
    monkeypatch.setattr(migrations, "available_migrations", lambda: edited)
    with pytest.raises(migrations.MigrationError, match="was changed after it was applied"):
        migrations.migrate(database)


def test_migrate_command(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database)
    assert main(["migrate"]) == 0
    assert "migration(s) applied" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "schema is up to date" in capsys.readouterr().out


def test_api_keys_are_stored_hashed_and_revocable(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations.migrate(database)
    monkeypatch.setenv("DATABASE_URL", database)
    assert main(["token", "create", "--user", "alice", "--role", "operator", "--name", "ci"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("sk_") and len(key) > 40
    with psycopg.connect(database) as conn:
        stored = conn.execute("SELECT key_hash, prefix, role FROM api_keys").fetchall()
        user = conn.execute("SELECT id, role FROM users").fetchall()
    assert stored == [(hashlib.sha256(key.encode()).hexdigest(), key[:9], "operator")]
    assert user == [("alice", "operator")]

    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and key not in listing and "active" in listing

    assert main(["token", "revoke", "1"]) == 0
    assert main(["token", "revoke", "1"]) == 2  # already revoked
    with psycopg.connect(database) as conn:
        assert apikeys.list_api_keys(conn)[0].revoked_at is not None


def test_token_rejects_bad_input_without_writing(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations.migrate(database)
    monkeypatch.setenv("DATABASE_URL", database)
    assert main(["token", "create", "--user", "Not_A_Label"]) == 2
    assert "DNS label" in capsys.readouterr().err
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_the_local_server_takes_no_one_without_its_password(postgres_url: str) -> None:
    """The dev stack's PostgreSQL has a password made up per server, on TCP and its socket."""
    info = conninfo_to_dict(postgres_url)
    assert info.get("password")
    without = make_conninfo(postgres_url, password="", connect_timeout=5)
    wrong = make_conninfo(postgres_url, password="not-the-password", connect_timeout=5)
    for conninfo in (without, wrong):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(conninfo).close()
    with psycopg.connect(postgres_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
