"""The ``streamspace facade`` subcommand, contributed to the core command line."""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web

from streamspace.config import load_settings
from streamspace_facade.app import AccessLog, create_app


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    port = args.port or settings.http.port
    web.run_app(
        create_app(settings),
        host=args.host,
        port=port,
        shutdown_timeout=10,
        access_log_class=AccessLog,
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("facade", help="run the REST/WebSocket facade")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind; default %(default)s")  # noqa: S104
    parser.add_argument("--port", type=int, default=None, help="port; default PORT or 8080")
    parser.set_defaults(func=_run)
