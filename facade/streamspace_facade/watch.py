"""``streamspace watch``: print a facade's WebSocket stream, one message per line (a client).

Like ``kubectl get -w`` for the facade: ``sessions`` (``sessions_update`` and
``hibernate_warning`` messages), ``cluster`` (``metrics_update``) or ``logs <namespace>/<pod>``.
``--summary`` prints one short line per sessions message instead of the JSON. The token comes
from ``--token`` or ``STREAMSPACE_TOKEN`` and travels in the Authorization header.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

STREAMS = ("sessions", "cluster", "logs")


def stream_url(api: str, stream: str, target: str | None = None) -> str:
    """The ws:// URL of ``stream`` on the facade at ``api`` (http:// or https://)."""
    base = api.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    if stream == "logs":
        namespace, _, pod = (target or "").partition("/")
        if not namespace or not pod:
            raise ValueError("logs needs <namespace>/<pod>")
        return f"{base}/api/v1/ws/logs/{quote(namespace, safe='')}/{quote(pod, safe='')}"
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")
    return f"{base}/api/v1/ws/{stream}"


def summary(data: Any) -> str:
    """One line for a stream message: what a person watching wants to see."""
    if not isinstance(data, dict):
        return str(data)
    kind, at = data.get("type"), data.get("timestamp", "")
    if kind == "sessions_update":
        sessions = ", ".join(f"{s.get('id')}={s.get('phase')}" for s in data.get("sessions") or [])
        return f"{at} {data.get('reason', 'update')}: {data.get('count', 0)} [{sessions}]"
    if kind == "hibernate_warning":
        return f"{at} WARNING {data.get('sessionId')} hibernates at {data.get('idleDeadline')}"
    return json.dumps(data, separators=(",", ":"))


async def watch(url: str, token: str, *, brief: bool, out: TextIO = sys.stdout) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, headers=headers, heartbeat=30, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            print(f"refused: HTTP {exc.status}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as exc:
            print(f"cannot connect: {exc}", file=sys.stderr)
            return 1
        async with ws:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    data = msg.data  # log lines are plain text
                line = (
                    summary(data)
                    if brief
                    else (
                        data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
                    )
                )
                print(line, file=out, flush=True)
        print(f"stream closed ({ws.close_code})", file=sys.stderr)
        return 0 if ws.close_code in (1000, 1001) else 1


def run(api: str, stream: str, target: str | None, token: str, *, brief: bool) -> int:
    try:
        url = stream_url(api, stream, target)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return asyncio.run(watch(url, token, brief=brief))
    except KeyboardInterrupt:
        return 0
