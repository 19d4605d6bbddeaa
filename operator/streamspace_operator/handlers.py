"""Kopf handlers, one module per resource kind; importing this module registers them all."""

from __future__ import annotations

import kopf

from streamspace.config import Settings


@kopf.on.probe(id="namespace")
def report_namespace(memo: kopf.Memo, **_: object) -> str:
    """Shown by the liveness endpoint: which namespace this replica serves."""
    settings: Settings = memo["settings"]
    return "*" if settings.kubernetes.all_namespaces else settings.kubernetes.namespace
