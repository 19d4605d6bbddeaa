"""Kopf timers that put no finalizer on their objects, and stop when their object is deleted.

Kopf gives every object with a timer a finalizer, so that it sees ``deletionTimestamp`` and stops
the timer before the object goes. With no operator running, that finalizer is never removed:
the object, and a namespace holding it, can never be deleted (decision 91). Our timers only
re-check an object that still exists, so they need no say in its deletion. Here they are
registered without the finalizer, and stopped by Kopf's own rule for timers whose filters stop
matching: an event handler marks the object's memo (Kopf keeps one memo per object) when the
``DELETED`` event arrives, before Kopf re-matches the timers' ``when`` filter on that same event.

Kopf offers no public switch for this (nolar/kopf#1001, #1183): the registered handler is
replaced by a copy with ``requires_finalizer=False``. ``test_no_finalizers`` checks the whole
registry, so a Kopf release that moves this fails the tests instead of finalizing objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kopf

GONE = "streamspace_deleted"  # key in an object's own memo: its DELETED event has arrived

Resource = tuple[str, str, str]  # group, version, plural


def alive(memo: kopf.Memo, **_: Any) -> bool:
    """The ``when`` filter of every timer: false once the object's deletion has been seen."""
    return not memo.get(GONE)


def alive_and(when: Callable[..., bool]) -> Callable[..., bool]:
    """``alive`` first, then a timer's own filter (``stops_on_deletion`` recognises it)."""

    def filtered(memo: kopf.Memo, **kwargs: Any) -> bool:
        return alive(memo) and when(memo=memo, **kwargs)

    filtered.alive_first = True  # type: ignore[attr-defined]
    return filtered


def stops_on_deletion(when: Any) -> bool:
    """Whether a timer's ``when`` filter is false once its object's deletion was seen."""
    return when is alive or getattr(when, "alive_first", False) is True


def deleted(type: str | None, **_: Any) -> bool:
    """The ``when`` filter of event handlers that only care for the ``DELETED`` event."""
    return type == "DELETED"


async def _note_deletion(memo: kopf.Memo, **_: Any) -> None:
    memo[GONE] = True


def stop_timers_on_deletion(registry: kopf.OperatorRegistry, resource: Resource) -> None:
    """Once per resource kind with timers: mark an object's memo when it is deleted."""
    kopf.on.event(*resource, registry=registry, id="timers_stop_on_deletion", when=deleted)(
        _note_deletion
    )


def timer(
    registry: kopf.OperatorRegistry,
    resource: Resource,
    *,
    id: str,
    interval: float,
    initial_delay: float | None = None,
    when: Callable[..., bool] | None = None,
) -> Callable[[Any], Any]:
    """``kopf.timer`` without the finalizer; the resource needs ``stop_timers_on_deletion``.
    ``when`` narrows the objects that get the timer (besides ``alive``)."""

    def decorate(fn: Any) -> Any:
        kopf.timer(
            *resource,
            registry=registry,
            id=id,
            interval=interval,
            initial_delay=initial_delay,
            when=alive if when is None else alive_and(when),
        )(fn)
        spawning = registry._spawning
        handler = spawning._handlers[-1]
        if handler.id != id or not hasattr(handler, "requires_finalizer"):
            raise RuntimeError(f"Kopf registered timer {id!r} in an unexpected way")
        spawning._handlers[-1] = dataclasses.replace(handler, requires_finalizer=False)
        return fn

    return decorate


def finalizing_handlers(registry: kopf.OperatorRegistry) -> list[str]:
    """Ids of the handlers that make Kopf put a finalizer on objects (there should be none)."""
    spawning = [str(h.id) for h in registry._spawning.get_all_handlers() if h.requires_finalizer]
    changing = [str(h.id) for h in registry._changing.get_all_handlers() if h.requires_finalizer]
    return spawning + changing
