"""``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header) as pure decisions.

A POST that carries a key is answered once: a retry with the same key by the same caller gets the
first answer again; the same key with a different request is refused (422); a retry while the
first is still being served is refused (409). Keys are scoped to the caller and stored only as a
hash of (caller, key).

The answers live in PostgreSQL for ``IDEMPOTENCY_TTL``. Because PostgreSQL may be what is failing
when a client retries, a create that writes a Kubernetes object also derives the object's name
from the key and records the key's hash and the request's fingerprint on the object: a retry then
finds the object itself (the API server refuses a second one with the same name).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_ANNOTATION = "stream.space/idempotency-key"
"""On an object created by a request with a key: the hash of (caller, key)."""
FINGERPRINT_ANNOTATION = "stream.space/idempotency-fingerprint"
"""On an object created by a request with a key: the fingerprint of that request."""

REUSED = "was already used for a different request"
"""The problem reported (422) for a key sent again with a different request."""

MAX_KEY_LENGTH = 255
IN_PROGRESS_SECONDS = 60
"""A first request that neither finished nor failed within this long (its process died) no
longer blocks retries."""


@dataclass(frozen=True)
class Key:
    """The key of one request: its hash (scoped to the caller) and the request's fingerprint."""

    hash: str
    fingerprint: str

    @property
    def name_suffix(self) -> str:
        """8 hex characters for names of objects the request creates."""
        return self.hash[:8]


def parse_key(header: str) -> str:
    """The key of an ``Idempotency-Key`` header (a structured-field string, quotes optional);
    ValueError when it is empty, too long or not printable ASCII."""
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 0 < len(value) <= MAX_KEY_LENGTH:
        raise ValueError(f"must be 1 to {MAX_KEY_LENGTH} characters")
    if not all(0x21 <= ord(c) <= 0x7E for c in value):
        raise ValueError("must be printable ASCII without spaces")
    return value


def key_for(user: str, key: str, method: str, path: str, body: bytes) -> Key:
    """The ``Key`` of a request by ``user``; the fingerprint covers method, path and body."""
    scoped = hashlib.sha256(f"{user}\0{key}".encode()).hexdigest()
    request = hashlib.sha256(f"{method}\n{path}\n".encode() + body).hexdigest()
    return Key(scoped, request)


@dataclass(frozen=True)
class Stored:
    """What PostgreSQL holds for a key: the request's fingerprint and, once done, the answer."""

    fingerprint: str
    status: int | None
    body: str | None
    content_type: str | None


class Outcome(enum.Enum):
    PROCEED = "proceed"
    """No usable answer is stored: serve the request."""
    REPLAY = "replay"
    """Answer with the stored answer."""
    MISMATCH = "mismatch"
    """The key was used for a different request: 422."""
    IN_PROGRESS = "in-progress"
    """The first request with this key is still being served: 409."""


def decide(stored: Stored | None, key: Key) -> Outcome:
    """What to do with a request whose key could not be claimed because ``stored`` exists."""
    if stored is None:
        return Outcome.PROCEED
    if stored.fingerprint != key.fingerprint:
        return Outcome.MISMATCH
    if stored.status is None:
        return Outcome.IN_PROGRESS
    return Outcome.REPLAY


def object_annotations(key: Key) -> dict[str, str]:
    """The annotations that tie an object to the request (and key) that created it."""
    return {KEY_ANNOTATION: key.hash, FINGERPRINT_ANNOTATION: key.fingerprint}


def match_object(obj: Mapping[str, Any], key: Key) -> Outcome:
    """An object already exists under the name the key gave: the same request's (REPLAY), a
    different request's with the same key (MISMATCH), or one unrelated to the key (PROCEED,
    under another name)."""
    found = (obj.get("metadata") or {}).get("annotations") or {}
    if found.get(KEY_ANNOTATION) != key.hash:
        return Outcome.PROCEED
    if found.get(FINGERPRINT_ANNOTATION) != key.fingerprint:
        return Outcome.MISMATCH
    return Outcome.REPLAY
