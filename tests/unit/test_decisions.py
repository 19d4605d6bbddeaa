"""Counted state decisions and whether a connect still wakes a session (``decisions``)."""

from __future__ import annotations

from typing import Any

import pytest

from streamspace.decisions import (
    DECISION,
    SEEN,
    Decision,
    connect_wakes,
    decision_of,
    next_decision,
    seen,
)

pytestmark = pytest.mark.unit


def session(state: str, decision: str | None = None, uid: str = "u1") -> dict[str, Any]:
    annotations = {DECISION: decision} if decision is not None else {}
    return {"metadata": {"uid": uid, "annotations": annotations}, "spec": {"state": state}}


def connection(saw: dict[str, Any] | None) -> dict[str, Any]:
    return {"metadata": {"annotations": seen(saw) if saw is not None else {}}}


def test_decisions_are_counted_from_zero() -> None:
    assert decision_of(session("running")) == Decision(0, None)
    assert next_decision(session("running"), "user") == {DECISION: "1:user"}
    assert decision_of(session("hibernated", "7:idle")) == Decision(7, "idle")
    assert next_decision(session("hibernated", "7:idle"), "connect") == {DECISION: "8:connect"}
    assert decision_of(session("running", "garbage")) == Decision(0, None)


def test_what_a_connect_saw() -> None:
    assert seen(session("hibernated", "3:idle")) == {SEEN: "u1:3:hibernated"}
    assert seen({"metadata": {"uid": "u2"}, "spec": {}}) == {SEEN: "u2:0:running"}


@pytest.mark.parametrize(
    ("saw", "now", "wakes"),
    [
        # nothing decided since the connect read it hibernated: it wakes
        (session("hibernated", "3:user"), session("hibernated", "3:user"), True),
        (session("hibernated", "3:idle"), session("hibernated", "3:idle"), True),
        # the idle timer hibernated it after the connect: the connect wins
        (session("running", "3:user"), session("hibernated", "4:idle"), True),
        # the user hibernated after the connect (even when it was hibernated already)
        (session("running", "3:connect"), session("hibernated", "4:user"), False),
        (session("hibernated", "3:idle"), session("hibernated", "4:user"), False),
        # another connect woke it since, then the user hibernated it again
        (session("hibernated", "3:idle"), session("hibernated", "5:user"), False),
        # hibernated since by someone who keeps no count (kubectl): the user's decision
        (session("running", "3:user"), session("hibernated", "3:user"), False),
        # not hibernated: nothing to wake
        (session("hibernated", "3:idle"), session("running", "4:connect"), False),
        (session("hibernated"), session("terminated", "1:user"), False),
        # a connect of an earlier session of this name, or one made with kubectl: it wakes
        (session("running", "9:user", uid="old"), session("hibernated", "1:user"), True),
        (None, session("hibernated", "4:user"), True),
    ],
)
def test_connect_wakes(saw: dict[str, Any] | None, now: dict[str, Any], wakes: bool) -> None:
    assert connect_wakes(now, connection(saw)) is wakes
