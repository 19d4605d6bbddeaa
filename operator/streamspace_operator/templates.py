"""Template reconciliation: validation into status, and waking the sessions that wait on it.

A Template's status says whether sessions can run it (``valid``, ``message``, the app type in
effect, a ``Ready`` condition). Any change of a Template, including its creation, re-reconciles
the sessions that name it, so a session waiting in ``Pending`` for a missing template proceeds as
soon as the template appears.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import kopf

from streamspace import API_GROUP, API_VERSION
from streamspace.conditions import Condition, merge_conditions
from streamspace.config import Settings
from streamspace.lifecycle import status_changed
from streamspace.templates import template_problems, view_template
from streamspace_operator.context import context, namespaced
from streamspace_operator.metrics import timed
from streamspace_operator.sessions import reconcile_or_retry


async def sessions_by_template(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    return {(namespaced(namespace), str(spec.get("template", ""))): name}


def template_status(
    name: str, spec: dict[str, Any], status: dict[str, Any], generation: int, *, now: datetime
) -> dict[str, Any]:
    problems = template_problems(name, spec)
    valid = not problems
    message = "; ".join(problems) if problems else "ready for sessions"
    return {
        "valid": valid,
        "message": message,
        "appType": view_template(spec).app_type,
        "observedGeneration": generation,
        "conditions": merge_conditions(
            status.get("conditions"),
            [Condition("Ready", valid, "Valid" if valid else "Invalid", message)],
            generation,
            now,
        ),
    }


async def template_changed(
    *,
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    event: kopf.RawEvent,
    **kwargs: Any,
) -> None:
    ctx = context(memo)
    namespace = namespaced(namespace)
    deleted = event.get("type") == "DELETED"
    generation = int(body["metadata"].get("generation") or 0)
    status = dict(body.get("status") or {})
    # Our own status write comes back as an event too; only a new generation (or a deletion)
    # can change what the template's sessions should run.
    fresh = deleted or status.get("observedGeneration") != generation
    if not deleted:
        wanted = template_status(name, dict(body.get("spec") or {}), status, generation, now=_now())
        if fresh or status_changed(status, {k: v for k, v in wanted.items() if k != "conditions"}):
            await ctx.api.patch_status("Template", namespace, name, wanted)
    if fresh:
        index: kopf.Index[tuple[str, str], str] = kwargs["sessions_by_template"]
        sessions = list(index.get((namespace, name), []))
        await asyncio.gather(*(reconcile_or_retry(ctx, namespace, session) for session in sessions))


def _now() -> datetime:
    return datetime.now(UTC)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    del settings  # nothing configurable here yet
    kopf.index(API_GROUP, API_VERSION, "sessions", registry=registry)(sessions_by_template)
    kopf.on.event(API_GROUP, API_VERSION, "templates", registry=registry)(
        timed("Template")(template_changed)
    )
