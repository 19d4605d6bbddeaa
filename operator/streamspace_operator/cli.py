"""The ``streamspace operator`` subcommand, contributed to the core command line."""

from __future__ import annotations

import argparse
from typing import Any

from streamspace.config import load_settings
from streamspace_operator.runtime import RunOptions, run


def _run(args: argparse.Namespace) -> int:
    return run(
        load_settings(),
        RunOptions(
            liveness_endpoint=args.liveness or None,
            standalone=args.standalone,
            priority=args.priority,
        ),
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("operator", help="run the Kopf operator")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL ('' to disable); default %(default)s",
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: for a single local replica only"
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    parser.set_defaults(func=_run)
