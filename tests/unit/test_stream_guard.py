"""The pure parts of the stream bounds: slots, the credential re-check, log sharing, pod rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamspace.manifests import MANAGED_BY, SESSION_LABEL, USER_LABEL
from streamspace_facade.errors import ApiError, unauthorized, unavailable
from streamspace_facade.podlogs import Follow, PodRef, may_follow
from streamspace_facade.principal import Principal
from streamspace_facade.streamguard import StreamSlots, recheck

pytestmark = pytest.mark.unit

ALICE = Principal("alice", "user")
OPS = Principal("olga", "operator")
ADMIN = Principal("root", "admin")


def test_slots_per_user_and_in_total() -> None:
    slots = StreamSlots(per_user=2, total=3)
    with slots.slot("bob", "sessions"), slots.slot("bob", "logs"):
        with pytest.raises(ApiError) as per_user:
            slots.slot("bob", "sessions").__enter__()
        assert per_user.value.status == 429
        assert per_user.value.details == {"limit": "WS_MAX_STREAMS_PER_USER", "max": 2}
        with slots.slot("alice", "sessions"):
            with pytest.raises(ApiError) as total:
                slots.slot("carol", "sessions").__enter__()
            assert total.value.details == {"limit": "WS_MAX_STREAMS", "max": 3}
        assert slots.by_user == {"bob": 2}
    assert slots.used == 0 and not slots.by_user


def test_a_failing_stream_gives_its_slot_back() -> None:
    slots = StreamSlots(per_user=1, total=10)
    with pytest.raises(RuntimeError), slots.slot("bob", "sessions"):
        raise RuntimeError("upgrade failed")
    with slots.slot("bob", "sessions"):
        assert slots.used == 1


class Answers:
    """An authenticate() that answers from a script, then keeps giving the last answer."""

    def __init__(self, *answers: Principal | ApiError) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, authorization: str | None) -> Principal:
        assert authorization == "Bearer x"
        self.calls += 1
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(answer, ApiError):
            raise answer
        return answer


@pytest.mark.parametrize(
    ("answers", "closed", "calls"),
    [
        (
            (ALICE, unavailable("database unavailable"), ALICE, unauthorized("token expired")),
            (4401, "credentials no longer valid: token expired"),
            4,
        ),
        ((ALICE, Principal("alice", "admin")), (4401, "credentials now name another user or role"), 2),
        ((unauthorized("API key revoked or unknown"),), (4401, "credentials no longer valid: API key revoked or unknown"), 1),
    ],
)  # fmt: skip
@pytest.mark.asyncio
async def test_recheck_closes_once_the_credential_fails(
    answers: tuple[Any, ...], closed: tuple[int, str], calls: int
) -> None:
    authenticate = Answers(*answers)
    seen: list[tuple[int, str]] = []
    await asyncio.wait_for(
        recheck(authenticate, "Bearer x", ALICE, 0, lambda c, t: seen.append((c, t))), 5
    )
    assert seen == [closed]
    assert authenticate.calls == calls


def pod(labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "labels": labels}}


SESSION = {**MANAGED_BY, SESSION_LABEL: "alice-firefox-1", USER_LABEL: "alice"}


@pytest.mark.parametrize(
    ("labels", "alice", "others", "staff"),
    [
        (SESSION, True, False, True),
        ({}, False, False, False),
        ({"app": "postgres"}, False, False, False),
        ({**MANAGED_BY, USER_LABEL: "alice"}, False, False, False),  # the home PVC's labels
        ({SESSION_LABEL: "alice-firefox-1", USER_LABEL: "alice"}, False, False, False),
        ({**SESSION, "app.kubernetes.io/managed-by": "helm"}, False, False, False),
        ({**SESSION, SESSION_LABEL: ""}, False, False, False),
    ],
)
def test_only_session_pods_may_be_followed(
    labels: dict[str, str], alice: bool, others: bool, staff: bool
) -> None:
    assert may_follow(ALICE, pod(labels)) is alice
    assert may_follow(Principal("bob", "user"), pod(labels)) is others
    assert may_follow(OPS, pod(labels)) is staff
    assert may_follow(ADMIN, pod(labels)) is staff


class Recorder:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.ended: tuple[int, str] | None = None

    def send(self, data: bytes) -> None:
        self.lines.append(data)

    def end(self, code: int, text: str) -> None:
        self.ended = (code, text)


def test_a_follow_is_shared_and_late_subscribers_get_their_tail() -> None:
    follow = Follow(("ns", "p", "uid", "app"), PodRef("ns", "p", "uid", "1"), stream=None)  # type: ignore[arg-type]
    first = Recorder()
    follow.join(first, 100)
    for n in range(5):
        follow.publish(f"line {n}".encode())
    late, none = Recorder(), Recorder()
    follow.join(late, 2)
    follow.join(none, 0)
    follow.publish(b"line 5")
    assert first.lines == [f"line {n}".encode() for n in range(6)]
    assert late.lines == [b"line 3", b"line 4", b"line 5"]
    assert none.lines == [b"line 5"]
    follow.leave(first)
    follow.publish(b"line 6")
    assert len(first.lines) == 6
    follow.finish("pod deleted")
    assert late.ended == none.ended == (1000, "pod deleted")
    after = Recorder()
    follow.join(after, 1)
    assert after.lines == [b"line 6"] and after.ended == (1000, "pod deleted")
