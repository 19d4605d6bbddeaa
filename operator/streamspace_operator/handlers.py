"""Kopf handlers, one module per resource kind; importing this module registers them all.

The process-wide pieces live here: connecting the Kubernetes client at start-up, closing it at
clean-up, and what the liveness endpoint reports.
"""

from __future__ import annotations

from typing import Any

import kopf

from streamspace_operator import sessions, templates
from streamspace_operator.context import context
from streamspace_operator.kube import Kube, connect

__all__ = ["sessions", "templates"]


@kopf.on.startup()
async def connect_client(memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if ctx.kube is None:
        ctx.kube = Kube(await connect(ctx.settings.kubernetes.kubeconfig))


@kopf.on.cleanup()
async def close_client(memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if ctx.kube is not None:
        await ctx.kube.api.close()
        ctx.kube = None


@kopf.on.probe(id="namespace")
def report_namespace(memo: kopf.Memo, **_: Any) -> str:
    """Shown by the liveness endpoint: which namespace this replica serves."""
    settings = context(memo).settings
    return "*" if settings.kubernetes.all_namespaces else settings.kubernetes.namespace
