"""The facade's API key cache (``auth.KeyCache``), on a clock the test moves."""

from __future__ import annotations

import pytest

from streamspace_facade.auth import KeyCache
from streamspace_facade.storage.apikeys import KeyOwner

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def owner(key_id: int = 1, valid_for: float | None = None) -> KeyOwner:
    return KeyOwner(id=key_id, user_id="alice", role="user", stale=False, valid_for=valid_for)


def test_an_entry_lives_for_the_ttl_or_until_the_key_expires() -> None:
    clock = Clock()
    cache = KeyCache(5.0, clock)
    cache.put("h1", owner(1), cache.generation)
    cache.put("h2", owner(2, valid_for=2.0), cache.generation)
    clock.now += 1.9
    assert cache.get("h1") == owner(1) and cache.get("h2") is not None
    clock.now += 0.2
    assert cache.get("h2") is None  # the key itself expired
    clock.now += 3.0
    assert cache.get("h1") is None  # the TTL is over: looked up again


def test_forget_drops_a_key_and_a_lookup_begun_before_it_is_not_kept() -> None:
    cache = KeyCache(60.0, Clock())
    cache.put("h1", owner(1), cache.generation)
    cache.put("h2", owner(2), cache.generation)
    before = cache.generation  # a lookup of key 2 begins
    cache.forget(2)  # key 2 is revoked meanwhile
    assert cache.get("h2") is None and cache.get("h1") is not None
    cache.put("h2", owner(2), before)  # what the lookup read before the revocation
    assert cache.get("h2") is None


def test_no_ttl_keeps_nothing() -> None:
    cache = KeyCache(0.0, Clock())
    cache.put("h1", owner(1), cache.generation)
    assert cache.get("h1") is None
