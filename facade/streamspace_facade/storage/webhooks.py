"""``webhook_deliveries``: the ids of Git webhook deliveries already acted on, so a replay at
any replica is acknowledged without a second sync."""

from __future__ import annotations

from streamspace_facade.storage.database import DB_WAIT, Database

RETENTION = "7 days"
"""How long a delivery id is remembered (providers redeliver within hours)."""


class WebhookDeliveryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def first(self, provider: str, delivery_id: str) -> bool:
        """Record a delivery; True the first time its id is seen. Forgets expired ids."""
        async with self._db.connection(DB_WAIT) as conn:
            cur = await conn.execute(
                "INSERT INTO webhook_deliveries (provider, delivery_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (provider, delivery_id[:200]),
            )
            first = cur.rowcount == 1
            await conn.execute(
                "DELETE FROM webhook_deliveries WHERE received_at < now() - %s::interval",
                (RETENTION,),
            )
        return first
