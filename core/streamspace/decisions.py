"""Who decided a session's state last, and whether a connect still wakes it (decision 95).

Every state change StreamSpace makes (a user's through the facade, the operator's idle
hibernation and connect wake) counts itself in the Session's ``DECISION`` annotation,
``<n>:<who>``, in the same write as the state, conditioned on the resourceVersion it read: the
count is exact. The facade's connect records on the Connection which Session and which count and
state it saw (``SEEN``). When the operator adopts the connection later, ``connect_wakes`` tells
whether that connect still wakes the session: a user's decision made after the connect was
read wins over it; an idle hibernation never does. All pure; the writers live in the facade and
the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DECISION = "stream.space/state-decision"
SEEN = "stream.space/session-seen"

USER, IDLE, CONNECT, SCHEDULE = "user", "idle", "connect", "schedule"


@dataclass(frozen=True)
class Decision:
    count: int
    who: str | None  # None before the first counted decision


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def decision_of(session: Mapping[str, Any]) -> Decision:
    """The session's last counted state decision (0, None when none was counted yet)."""
    count, _, who = str(_annotations(session).get(DECISION) or "").partition(":")
    return Decision(int(count), who or None) if count.isdigit() else Decision(0, None)


def next_decision(session: Mapping[str, Any], who: str) -> dict[str, str]:
    """The annotation that counts a new decision by ``who`` on top of ``session`` as read."""
    return {DECISION: f"{decision_of(session).count + 1}:{who}"}


def seen(session: Mapping[str, Any]) -> dict[str, str]:
    """What a connect records about the session it read: uid, decision count, state."""
    meta = session.get("metadata") or {}
    state = (session.get("spec") or {}).get("state", "running")
    return {SEEN: f"{meta.get('uid', '')}:{decision_of(session).count}:{state}"}


def connect_wakes(session: Mapping[str, Any], connection: Mapping[str, Any]) -> bool:
    """Whether ``connection``, adopted now, sets hibernated ``session`` running.

    * not hibernated: nothing to wake;
    * no record of what the connect saw (a Connection made with kubectl), or one of an earlier
      session of this name: it wakes, as it always did;
    * nothing decided since the connect read the session: it wakes if it saw it hibernated; if
      it saw it running, someone who keeps no count (kubectl) hibernated it since: the user;
    * decided since: only an idle hibernation gives way (the idle timer never overrides a
      connect); a user's decision (or a user's hibernate after a wake) stands.
    """
    if (session.get("spec") or {}).get("state") != "hibernated":
        return False
    uid, _, rest = str(_annotations(connection).get(SEEN) or "").partition(":")
    count, _, state = rest.partition(":")
    if uid != (session.get("metadata") or {}).get("uid") or not count.isdigit():
        return True
    now = decision_of(session)
    if now.count <= int(count):
        return state == "hibernated"
    return now.who == IDLE
