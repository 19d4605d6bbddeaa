"""Pod logs for the log streams: session pods only, one upstream follow per container, shared.

Which pods: only session pods (``app.kubernetes.io/managed-by=streamspace`` and a
``stream.space/session`` label), for every role; a user only those of their own sessions.
Anything else in scope (the facade's own pod, a database) is "not found", as it would be for
a pod that does not exist.

What they cost: following a log holds two API-server connections (the log itself and a watch
that notices the pod's deletion). Follows therefore run on a Kubernetes client of their own,
whose pool holds at most two connections per follow, so log streams can never use up the
connections REST requests need. Every subscriber of one container (of one incarnation of a
pod) shares one follow: the first subscriber opens it, the last one to leave closes it, and at
most ``WS_MAX_LOG_FOLLOWS`` are open at once (more get 429).

History: the follow starts with the ``tailLines`` of the subscriber that opened it and keeps
the last ``BACKLOG`` lines; a later subscriber starts with up to its ``tailLines`` of those.
(One joining while the opener's history is still arriving may get some of it twice over its
``tailLines``: the API server does not say where history ends.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import WSCloseCode

from streamspace.db.mirror import is_deleted
from streamspace.manifests import MANAGED_BY, SESSION_LABEL, USER_LABEL
from streamspace_facade import metrics
from streamspace_facade.errors import ApiError, conflict
from streamspace_facade.kube import WATCH_SECONDS, Kube, close_stream
from streamspace_facade.principal import Principal
from streamspace_facade.streamguard import too_many

log = logging.getLogger(__name__)

BACKLOG = 1000
"""Lines of each followed log kept for subscribers who join later; also the most
``tailLines`` a subscriber may ask for."""
RETRY_SECONDS = 2.0


def may_follow(who: Principal, pod: Mapping[str, Any]) -> bool:
    """Session pods only, for every role; a user only the pods of their own sessions."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    session_pod = all(labels.get(k) == v for k, v in MANAGED_BY.items()) and bool(
        labels.get(SESSION_LABEL)
    )
    return session_pod and (who.sees_everything or labels.get(USER_LABEL) == who.user)


class Subscriber(Protocol):
    def send(self, data: bytes) -> None:
        """Queue a text message; never blocks."""

    def end(self, code: int, text: str) -> None:
        """Close once everything queued is written."""


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    version: str

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodRef:
        meta = pod["metadata"]
        return cls(
            str(meta["namespace"]), str(meta["name"]), str(meta["uid"]), meta["resourceVersion"]
        )


Key = tuple[str, str, str, str]
"""(namespace, pod, pod uid, container)."""


class Follow:
    """One upstream follow of a container's log and its subscribers."""

    def __init__(self, key: Key, pod: PodRef, stream: aiohttp.ClientResponse) -> None:
        self.key = key
        self.pod = pod
        self.stream = stream
        self.subscribers: set[Subscriber] = set()
        self.backlog: deque[bytes] = deque(maxlen=BACKLOG)
        self.holders = 0
        """Streams using this follow, counted from before their upgrade to their end."""
        self.ended: tuple[int, str] | None = None
        self.task: asyncio.Task[None] | None = None

    def join(self, subscriber: Subscriber, tail: int) -> None:
        """Start ``subscriber`` with the last ``tail`` lines, then every new one."""
        history = list(self.backlog)[-tail:] if tail else []
        for line in history:
            subscriber.send(line)
        metrics.WS_MESSAGES.labels("logs", "line").inc(len(history))
        if self.ended is not None:
            subscriber.end(*self.ended)
            return
        self.subscribers.add(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, line: bytes) -> None:
        self.backlog.append(line)
        for subscriber in list(self.subscribers):
            subscriber.send(line)
        metrics.WS_MESSAGES.labels("logs", "line").inc(len(self.subscribers))

    def finish(self, text: str) -> None:
        """The log ended or the pod went away: every subscriber is closed normally, saying so."""
        self.ended = (int(WSCloseCode.OK), text)
        for subscriber in list(self.subscribers):
            subscriber.end(*self.ended)
        self.subscribers.clear()


class Follows:
    """The open follows of one facade process, on the log streams' own Kubernetes client."""

    def __init__(self, kube: Kube, limit: int) -> None:
        self.kube = kube
        self.limit = limit
        self.open: dict[Key, Follow] = {}
        self._opening: dict[Key, asyncio.Future[None]] = {}

    async def acquire(self, pod: Mapping[str, Any], container: str, tail: int) -> Follow:
        """The follow of ``container`` (opened now if needed); hold it until :meth:`release`.

        Raises 409 when the container has no log yet and 429 past ``WS_MAX_LOG_FOLLOWS``.
        """
        ref = PodRef.of(pod)
        key = (ref.namespace, ref.name, ref.uid, container)
        while (pending := self._opening.get(key)) is not None:
            await asyncio.shield(pending)  # somebody is opening it: share theirs
        follow = self.open.get(key)
        if follow is not None and follow.ended is None:
            follow.holders += 1
            return follow
        if len(self.open) + len(self._opening) >= self.limit:
            raise too_many("logs", "WS_MAX_LOG_FOLLOWS", self.limit, "pod logs followed at once")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opening[key] = done
        try:
            stream = await self.kube.pod_log(ref.namespace, ref.name, container, tail)
        except ApiError as exc:
            if exc.status == 400:  # the container has not started: an HTTP answer, not silence
                raise conflict(f"no log yet: {exc.message}") from None
            raise
        finally:
            del self._opening[key]
            done.set_result(None)
        follow = Follow(key, ref, stream)
        follow.holders = 1
        self.open[key] = follow
        metrics.LOG_FOLLOWS_OPENED.inc()
        metrics.LOG_FOLLOWS.inc()
        follow.task = asyncio.create_task(self._run(follow), name=f"log-{ref.name}-{container}")
        # also when the task is cancelled before it ever ran
        follow.task.add_done_callback(lambda _: self._ended(follow))
        return follow

    def release(self, follow: Follow) -> None:
        """One holder is done; the last one closes the upstream follow."""
        follow.holders -= 1
        if follow.holders <= 0 and follow.task is not None:
            follow.task.cancel()

    def _ended(self, follow: Follow) -> None:
        """The upstream follow is over (ended, or cancelled by its last holder)."""
        if self.open.get(follow.key) is follow:
            del self.open[follow.key]
        metrics.LOG_FOLLOWS.dec()  # called once per follow: the task's done callback
        close_stream(follow.stream)  # cut when left mid-way: no TLS close left behind

    async def close(self) -> None:
        tasks = [f.task for f in self.open.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, follow: Follow) -> None:
        """Lines until the log ends or the pod goes away; then a normal close that says which."""
        reading = asyncio.create_task(_lines(follow))
        gone = asyncio.create_task(_pod_gone(self.kube, follow.pod))
        try:
            done, _ = await asyncio.wait({reading, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone in done and gone.result():
                follow.finish("pod deleted")
            elif reading in done:
                ended_by_deletion = await _exists(self.kube, follow.pod) is False
                follow.finish("pod deleted" if ended_by_deletion else "log ended")
        finally:
            for task in (reading, gone):
                task.cancel()
            await asyncio.gather(reading, gone, return_exceptions=True)


async def _lines(follow: Follow) -> None:
    async for line in follow.stream.content:
        # a text frame must be UTF-8: undecodable bytes of a log become U+FFFD
        follow.publish(line.rstrip(b"\r\n").decode(errors="replace").encode())


async def _exists(kube: Kube, pod: PodRef) -> bool | None:
    """Whether this incarnation of the pod is still there (None: cannot tell)."""
    try:
        current = await kube.get_pod(pod.namespace, pod.name)
    except ApiError as exc:
        return False if exc.status == 404 else None
    return current["metadata"]["uid"] == pod.uid and not is_deleted(current)


async def _pod_gone(kube: Kube, pod: PodRef) -> bool:
    """True once the pod (this incarnation of it) is deleted."""
    version = pod.version
    while True:
        try:
            events = kube.watch_pod(pod.namespace, pod.name, version, WATCH_SECONDS)
            async with contextlib.aclosing(events):  # a return closes the stream now
                async for kind, obj in events:
                    if kind == "ERROR":
                        break
                    version = str(obj["metadata"].get("resourceVersion") or version)
                    if kind == "DELETED" or obj["metadata"].get("uid") != pod.uid:
                        return True
        except ApiError as exc:
            log.info("watch of pod %s/%s interrupted: %s", pod.namespace, pod.name, exc.message)
            await asyncio.sleep(RETRY_SECONDS)
        if await _exists(kube, pod) is False:
            return True
        with contextlib.suppress(ApiError):
            current = await kube.get_pod(pod.namespace, pod.name)
            version = str(current["metadata"]["resourceVersion"])
