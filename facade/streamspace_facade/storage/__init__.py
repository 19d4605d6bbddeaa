"""The facade's data access: every SQL statement the facade runs lives in this package.

The pattern, for every area (follow it when adding one, e.g. ``plugins.py``, ``outbox.py``):

* **One module per area**, named for the table(s) it holds: ``sessions.py``, ``catalog.py``,
  ``apikeys.py``, ``audit.py``, ``webhooks.py``, ``idempotency.py``... It defines one class
  (``SessionStore``, ``CatalogStore``...) whose constructor takes the shared ``Database`` and
  whose ``async`` methods are the area's queries. No module outside this package writes SQL or
  imports ``psycopg`` (an import-linter contract checks it); views and middleware call methods.
* **Typed rows**: a method returns frozen dataclasses (``psycopg.rows.class_row``), plain
  values, or, where PostgreSQL renders an API answer itself (session lists), that text. Never
  ``dict_row`` dicts leaking to views. Views turn rows into the API's camelCase shape.
* **One pool**: ``Database`` (``database.py``) owns the single ``AsyncConnectionPool``;
  ``Storage`` below owns the ``Database`` and one attribute per area (a new area adds its store
  there, built from the same ``Database``), and is held by ``Services.storage`` (``state.py``;
  ``None`` when no database is configured). Methods borrow a connection with
  ``self._db.connection(wait=...)`` for one statement or one transaction (``async with
  conn.transaction()``), never per-request ``psycopg.connect``; plain reads use
  ``self._db.rows/row/page(RowClass, query, params)`` (``page``: a LIMIT/OFFSET query and its
  count on one connection). The default wait is
  ``DB_WAIT`` (10 s); callers with their own budget (auth 2 s, readiness) pass ``wait``.
* **Errors map once, at this edge**: any ``psycopg`` error while a connection is held leaves as
  ``StorageUnavailable`` (outage, pool timeout, pool closed: the ``errors`` middleware answers
  ``503 UNAVAILABLE "database unavailable"``) or ``StorageError`` (anything else: 500, logged).
  Domain outcomes are return values (``None`` for not found, ``False`` for nothing changed), so
  views raise their own 404/409. Code that tolerates an outage (audit, idempotency) catches
  ``StorageError``.
* **Shared SQL** that the operator also runs (the mirror's rows, the catalog tables, audit and
  idempotency records) stays in ``streamspace.db``; a store method calls it with its connection.
"""

from __future__ import annotations

from streamspace.db.outbox import Audience
from streamspace_facade.storage.apikeys import ApiKeyStore
from streamspace_facade.storage.audit import AuditStore
from streamspace_facade.storage.catalog import CatalogStore
from streamspace_facade.storage.database import DB_WAIT, Database, StorageError, StorageUnavailable
from streamspace_facade.storage.deliveries import DeliveryStore
from streamspace_facade.storage.idempotency import IdempotencyStore
from streamspace_facade.storage.plugins import PluginStore
from streamspace_facade.storage.repositories import RepositoryStore
from streamspace_facade.storage.sessions import SessionStore
from streamspace_facade.storage.usage import UsageStore
from streamspace_facade.storage.users import UserStore
from streamspace_facade.storage.webhooks import WebhookDeliveryStore

__all__ = ["DB_WAIT", "Database", "Storage", "StorageError", "StorageUnavailable"]


class Storage:
    """The facade's database: the pool and one store per area, built once per application."""

    def __init__(self, database: Database, home: str | None = None) -> None:
        self.database = database
        self.sessions = SessionStore(database)
        self.catalog = CatalogStore(database)
        self.repositories = RepositoryStore(database)
        self.apikeys = ApiKeyStore(database)
        self.audit = AuditStore(database)
        self.idempotency = IdempotencyStore(database)
        self.webhooks = WebhookDeliveryStore(database)
        self.plugins = PluginStore(database)
        self.deliveries = DeliveryStore(database)
        self.usage = UsageStore(database)
        self.users = UserStore(database, Audience(home=home))
        """``home``: the facade's namespace, whose plugins hear of users (``user.*``)."""

    @classmethod
    def for_url(cls, url: str, *, pool_size: int, home: str | None = None) -> Storage:
        return cls(Database.for_url(url, size=pool_size), home)

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()
