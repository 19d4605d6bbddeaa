"""The ``streamspace operator`` subcommand, contributed to the core command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import time
from typing import Any

from streamspace.config import load_settings
from streamspace_operator.release import release
from streamspace_operator.runtime import RunOptions, run, seniority_priority


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    kube = settings.kubernetes
    metrics = settings.metrics
    if args.namespace or args.all_namespaces:  # the command line wins over OPERATOR_NAMESPACES
        kube = dataclasses.replace(kube, operator_namespaces=())
    settings = dataclasses.replace(
        settings,
        kubernetes=dataclasses.replace(
            kube,
            namespace=args.namespace or kube.namespace,
            all_namespaces=args.all_namespaces or kube.all_namespaces,
        ),
        metrics=dataclasses.replace(
            metrics,
            host=args.metrics_host or metrics.host,
            port=metrics.port if args.metrics_port is None else args.metrics_port,
        ),
    )
    if args.release_finalizers:
        return asyncio.run(release(settings))
    return run(
        settings,
        RunOptions(
            liveness_endpoint=args.liveness or None,
            standalone=args.standalone,
            priority=args.priority,
        ),
    )


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{raw}: expected 0 (off) or a port number")
    return value


def _priority(raw: str) -> int:
    """A peering priority, ``oldest`` or ``random``: standby replicas of one Deployment share
    their arguments, and equal priorities make every replica pause (Kopf's rule). ``oldest``
    ranks replicas by start time, so a newcomer never takes over from a live replica."""
    if raw == "oldest":
        return seniority_priority(time.time(), secrets.randbelow(1024))
    if raw == "random":
        return secrets.randbelow(2**31 - 1) + 1
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw}: expected an integer, 'oldest' or 'random'"
        ) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("operator", help="run the Kopf operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        help="namespace to serve; default OPERATOR_NAMESPACES (a shard), else NAMESPACE or"
        " streamspace",
    )
    scope.add_argument(
        "--all-namespaces", action="store_true", help="serve every namespace (ALL_NAMESPACES)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="URL of Kopf's probe endpoint, for liveness and readiness alike: it answers once"
        " start-up finished ('' to disable); default %(default)s",
    )
    parser.add_argument(
        "--metrics-host", help="address of the Prometheus /metrics endpoint; default METRICS_HOST"
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        help="port of the Prometheus /metrics endpoint, 0 for none; default METRICS_PORT or 9090",
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: for a single local replica only"
    )
    parser.add_argument(
        "--priority",
        type=_priority,
        default=0,
        help="peering priority of this replica (the highest acts); 'oldest' for standbys: the"
        " longest-running replica acts (a restarted one waits); 'random': a random priority",
    )
    parser.add_argument(
        "--release-finalizers",
        action="store_true",
        help="remove stream.space/finalizer (put there by earlier versions) from every StreamSpace"
        " object in the namespace(s) served, then exit; safe to repeat",
    )
    parser.set_defaults(func=_run)
