"""The ``streamspace facade`` subcommand, contributed to the core command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from aiohttp import web

from streamspace.config import load_settings
from streamspace.durations import format_duration
from streamspace_facade import watch
from streamspace_facade.app import AccessLog, create_app

log = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; then stop listening, close WebSockets with 1001, give the
    requests in flight up to SHUTDOWN_TIMEOUT, close the clients, and exit 0."""
    settings = load_settings()
    port = args.port or settings.http.port
    shutdown = settings.runtime.shutdown_timeout
    log.info(
        "starting facade on %s:%s (shutdown timeout %s)", args.host, port, format_duration(shutdown)
    )
    web.run_app(
        create_app(settings),
        host=args.host,
        port=port,
        shutdown_timeout=shutdown.total_seconds(),
        access_log_class=AccessLog,
        print=None,  # aiohttp's banner goes to stdout, outside the log format
    )
    log.info("facade stopped")
    return 0


def _watch(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("STREAMSPACE_TOKEN")
    if not token:
        print("pass --token or set STREAMSPACE_TOKEN (an API key or a JWT)", file=sys.stderr)
        return 2
    return watch.run(
        args.url,
        args.stream,
        args.target,
        token,
        brief=args.summary,
        reconnect=args.reconnect,
        delta=args.delta,
    )


def register(subparsers: Any) -> None:
    follow = subparsers.add_parser("watch", help="print a facade's WebSocket stream as it arrives")
    follow.add_argument("stream", choices=watch.STREAMS)
    follow.add_argument("target", nargs="?", help="for logs: <namespace>/<pod>")
    follow.add_argument(
        "--url",
        default=os.environ.get("STREAMSPACE_API", "http://127.0.0.1:8080"),
        help="the facade (default: STREAMSPACE_API or %(default)s)",
    )
    follow.add_argument("--token", help="API key or JWT (default: STREAMSPACE_TOKEN)")
    follow.add_argument("--summary", action="store_true", help="one short line per message")
    follow.add_argument(
        "--delta",
        action="store_true",
        help="sessions: a snapshot, then only what changed (sessions_delta messages)",
    )
    follow.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="end when the connection is lost (sessions and cluster reconnect with backoff)",
    )
    follow.set_defaults(func=_watch)

    parser = subparsers.add_parser("facade", help="run the REST/WebSocket facade")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind; default %(default)s")  # noqa: S104
    parser.add_argument("--port", type=int, default=None, help="port; default PORT or 8080")
    parser.set_defaults(func=_run)
