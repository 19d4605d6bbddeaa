"""Templates as the rest of the code sees them: legacy shapes normalised, app type resolved.

The public template repository writes ``kasmvnc`` instead of ``vnc`` and flat
``defaultResources: {memory, cpu}`` (meaning requests and limits both set to those values). Both
forms are accepted everywhere; this module turns either into one view. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamspace.naming import is_object_name

DEFAULT_VNC_PORT = 3000
HOME_MOUNT_NAME = "user-home"
DEFAULT_HOME_PATH = "/config"
HTTP_PORT_NAMES = frozenset({"http", "https", "web", "webapp", "ui"})

Resources = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Port:
    name: str
    container_port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class TemplateView:
    """A Template spec with legacy forms resolved."""

    base_image: str
    display_name: str = ""
    app_type: str = "desktop"
    ports: tuple[Port, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    resources: Resources = field(default_factory=dict)
    home_path: str = DEFAULT_HOME_PATH
    vnc_enabled: bool = False
    vnc_port: int | None = None
    webapp_port: int | None = None
    webapp_path: str = "/"
    health_check: str | None = None
    capabilities: tuple[str, ...] = ()
    """As listed; the Linux capability names among them may be given back if an admin allows."""

    @property
    def main_port(self) -> int | None:
        """The port the browser reaches: the web app's, the VNC client's, else the first one."""
        if self.app_type == "webapp" and self.webapp_port:
            return self.webapp_port
        if self.vnc_enabled and self.vnc_port:
            return self.vnc_port
        return self.ports[0].container_port if self.ports else None


def _quantity(value: Any) -> str:
    return str(value)


def normalize_resources(raw: Mapping[str, Any] | None) -> Resources:
    """Flat ``{memory, cpu}`` or structured ``{requests, limits}`` → ``{requests, limits}``."""
    if not raw:
        return {}
    flat = {k: _quantity(raw[k]) for k in ("cpu", "memory") if raw.get(k) is not None}
    if flat:
        return {"requests": dict(flat), "limits": dict(flat)}
    result: Resources = {}
    for part in ("requests", "limits"):
        values = raw.get(part)
        if isinstance(values, Mapping) and values:
            result[part] = {str(k): _quantity(v) for k, v in values.items()}
    return result


def merge_resources(*layers: Resources) -> Resources:
    """Per-key precedence: the first layer that sets ``requests.cpu`` wins, and so on."""
    merged: Resources = {}
    for layer in reversed(layers):
        for part, values in layer.items():
            merged.setdefault(part, {}).update(values)
    return {part: values for part, values in merged.items() if values}


def vnc_block(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``vnc``, or the legacy ``kasmvnc`` that means the same."""
    block = spec["vnc"] if "vnc" in spec else spec.get("kasmvnc")
    return block if isinstance(block, Mapping) else None


def infer_app_type(spec: Mapping[str, Any]) -> str:
    """Explicit appType; else webapp if webapp.enabled; else webapp if VNC is off and an HTTP
    port exists; else desktop."""
    explicit = spec.get("appType")
    if explicit in ("desktop", "webapp"):
        return str(explicit)
    webapp = spec.get("webapp")
    if isinstance(webapp, Mapping) and webapp.get("enabled"):
        return "webapp"
    vnc = vnc_block(spec)
    vnc_enabled = vnc is not None and bool(vnc.get("enabled", True))
    has_http_port = any(
        isinstance(p, Mapping) and str(p.get("name", "")).lower() in HTTP_PORT_NAMES
        for p in spec.get("ports") or []
    )
    if not vnc_enabled and has_http_port:
        return "webapp"
    return "desktop"


def template_problems(name: str, spec: Mapping[str, Any]) -> list[str]:
    """Why a template cannot run sessions (empty when it can)."""
    problems = []
    if not is_object_name(name):
        problems.append(f"metadata.name {name!r} is not a valid Kubernetes object name")
    if not str(spec.get("baseImage") or "").strip():
        problems.append("spec.baseImage is required")
    view = view_template(spec)
    if view.app_type == "webapp" and view.main_port is None:
        problems.append("a webapp template needs webapp.port or a port in spec.ports")
    if view.app_type == "desktop" and view.main_port is None:
        problems.append("a desktop template needs vnc/kasmvnc enabled or a port in spec.ports")
    return problems


def view_template(spec: Mapping[str, Any]) -> TemplateView:
    ports = tuple(
        Port(
            name=str(p.get("name") or f"port-{p['containerPort']}"),
            container_port=int(p["containerPort"]),
            protocol=str(p.get("protocol") or "TCP"),
        )
        for p in spec.get("ports") or []
        if isinstance(p, Mapping) and p.get("containerPort")
    )
    vnc = vnc_block(spec)
    vnc_enabled = vnc is not None and bool(vnc.get("enabled", True))
    vnc_port = int(vnc.get("port") or DEFAULT_VNC_PORT) if vnc is not None and vnc_enabled else None
    raw_webapp = spec.get("webapp")
    webapp: Mapping[str, Any] = raw_webapp if isinstance(raw_webapp, Mapping) else {}
    webapp_port = webapp.get("port")
    app_type = infer_app_type(spec)
    if app_type == "webapp" and not webapp_port:
        http = [p for p in ports if p.name.lower() in HTTP_PORT_NAMES] or list(ports)
        webapp_port = http[0].container_port if http else None
    home = next(
        (
            str(m["mountPath"])
            for m in spec.get("volumeMounts") or []
            if isinstance(m, Mapping) and m.get("name") == HOME_MOUNT_NAME and m.get("mountPath")
        ),
        DEFAULT_HOME_PATH,
    )
    return TemplateView(
        base_image=str(spec.get("baseImage") or ""),
        display_name=str(spec.get("displayName") or ""),
        app_type=app_type,
        ports=ports,
        env=tuple(
            (str(e["name"]), str(e.get("value", "")))
            for e in spec.get("env") or []
            if isinstance(e, Mapping) and e.get("name")
        ),
        resources=normalize_resources(spec.get("defaultResources")),
        home_path=home,
        vnc_enabled=vnc_enabled,
        vnc_port=vnc_port,
        webapp_port=int(webapp_port) if webapp_port else None,
        webapp_path=str(webapp.get("path") or "/"),
        health_check=str(webapp["healthCheck"]) if webapp.get("healthCheck") else None,
        capabilities=tuple(str(c) for c in spec.get("capabilities") or [] if isinstance(c, str)),
    )
