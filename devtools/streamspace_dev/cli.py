"""``streamspace dev``: build and run the local stack (contributed through entry points)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streamspace.config import load_settings
from streamspace_dev import binaries
from streamspace_dev.cluster import PROFILES, ControlPlane
from streamspace_dev.postgres import LocalPostgres
from streamspace_dev.settings import load_dev_settings


def _control_plane() -> ControlPlane:
    dev = load_dev_settings()
    return ControlPlane(dev.state_dir, dev.cache_dir)


def _cmd_build(args: argparse.Namespace) -> int:
    cache = load_dev_settings().cache_dir
    tools = tuple(dict.fromkeys(args.tools))
    report = binaries.build(cache, args.profile, interval=args.progress_every, tools=tools)
    if not report.built:
        extra = f" and {', '.join(tools)}" if tools else ""
        print(f"control plane ({args.profile}){extra} already built in {cache}")
    return 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    plane = _control_plane()
    if args.action == "up":
        binaries.build(plane.cache_dir, args.profile)
        state = plane.up(args.profile)
        print(f"control plane ({state.profile}) ready at https://127.0.0.1:{state.api_port}")
        print(f"kubeconfig: {plane.kubeconfig}")
        print(f"  kubectl --kubeconfig {plane.kubeconfig} get crds")
        print(f"timings: {json.dumps(state.timings)}")
    elif args.action == "down":
        stopped = plane.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        status = plane.status()
        print(json.dumps(status, indent=2))
        return 0 if status["running"] else 1
    return 0


def _cmd_postgres(args: argparse.Namespace) -> int:
    server = LocalPostgres(load_dev_settings().state_dir)
    if args.action == "up":
        print(server.up())
    elif args.action == "down":
        print("stopped" if server.down() else "nothing was running")
    else:
        url = server.url()
        print(url or "not running")
        return 0 if url else 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from streamspace_dev.stack import run_stack  # noqa: PLC0415 - only `dev run` needs it

    return run_stack(load_settings(), load_dev_settings(), port=args.port)


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="local development stack").add_subparsers(
        dest="dev_command", required=True, metavar="WHAT"
    )
    build = dev.add_parser(
        "build", help="build the local control plane from the Go module proxy (once; cached)"
    )
    build.add_argument(
        "--profile",
        choices=(*PROFILES, "none"),
        default="full",
        help="control plane to build; none: only the tools of --with",
    )
    build.add_argument(
        "--with",
        dest="tools",
        action="append",
        choices=sorted(binaries.TOOLS),
        default=[],
        help="also build this tool into the same cache (the chart tests need helm)",
    )
    build.add_argument(
        "--progress-every",
        type=float,
        default=15.0,
        help="seconds between progress lines when not on a terminal (%(default)s)",
    )
    build.set_defaults(func=_cmd_build)
    cluster = dev.add_parser("cluster", help="local control plane (etcd, kube-apiserver, ...)")
    cluster.add_argument("action", choices=("up", "down", "status"))
    cluster.add_argument("--profile", choices=PROFILES, default="minimal")
    cluster.set_defaults(func=_cmd_cluster)
    pg = dev.add_parser("postgres", help="throw-away local PostgreSQL")
    pg.add_argument("action", choices=("up", "down", "status"))
    pg.set_defaults(func=_cmd_postgres)
    run = dev.add_parser("run", help="control plane, PostgreSQL, operator and facade, foreground")
    run.add_argument("--port", type=int, default=None, help="facade port (default: PORT or 8080)")
    run.set_defaults(func=_cmd_run)
