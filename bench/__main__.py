"""`python -m bench [scenario ...]`: run benchmark scenarios (default: all)."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = ("reconcile", "idle", "sync", "api", "ws", "soak", "events", "scale")


def main() -> None:
    names = sys.argv[1:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    for name in names:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
