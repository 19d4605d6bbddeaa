"""The facade's storage layer against a real PostgreSQL: driver errors become storage errors at
its edge (the 503/500 split every route relies on), and the API key store manages keys as the
CLI does (the two share their statements)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio

from streamspace.auth import apikeys
from streamspace.db.migrate import migrate
from streamspace_facade.storage import Storage, StorageError, StorageUnavailable

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def storage(database: str) -> AsyncIterator[Storage]:
    migrate(database)
    store = Storage.for_url(database, pool_size=2)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_an_unreachable_database_is_storage_unavailable() -> None:
    url = f"host=127.0.0.1 port={unused_port()} dbname=x user=x connect_timeout=1"
    store = Storage.for_url(url, pool_size=1)
    await store.open()
    try:
        with pytest.raises(StorageUnavailable) as caught:  # the pool's timeout, translated
            await store.database.ping(wait=0.5)
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    finally:
        await store.close()
    with pytest.raises(StorageUnavailable):  # a closed pool is an outage too
        await store.catalog.size(wait=0.5)


@pytest.mark.asyncio
async def test_a_failing_statement_is_a_storage_error_not_an_outage(storage: Storage) -> None:
    with pytest.raises(StorageError) as caught:
        async with storage.database.connection() as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert not isinstance(caught.value, StorageUnavailable)
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)
    await storage.database.ping(wait=2)  # the connection went back to the pool usable


@pytest.mark.asyncio
async def test_api_keys_made_by_the_store_and_by_the_cli_are_the_same_keys(
    storage: Storage, database: str
) -> None:
    keys = storage.apikeys
    made = await keys.create("dora", "operator", "laptop")
    with psycopg.connect(database, autocommit=True) as conn:
        by_cli = apikeys.create_api_key(conn, "dora", "user", "desktop")
        listed_by_cli = apikeys.list_api_keys(conn, "dora")
    assert await keys.list("dora") == listed_by_cli
    assert [(k.name, k.role, k.prefix) for k in listed_by_cli] == [
        ("laptop", "operator", made[:9]),
        ("desktop", "user", by_cli[:9]),
    ]

    owner = await keys.owner(apikeys.hash_key(made), wait=2)
    assert owner is not None and (owner.user_id, owner.role, owner.stale) == (
        "dora",
        "operator",
        True,
    )
    again = await keys.owner(apikeys.hash_key(made), wait=2)
    assert again is not None and not again.stale  # the first use was recorded

    assert await keys.revoke(owner.id)
    assert not await keys.revoke(owner.id)  # already revoked
    assert await keys.owner(apikeys.hash_key(made), wait=2) is None
    assert await keys.owner(apikeys.hash_key(apikeys.new_key()), wait=2) is None
    with pytest.raises(ValueError, match="DNS label"):
        await keys.create("Not A Label", "user")
