"""Scenario `sync`: a generated repository of 500 templates, synced cold and again unchanged.

Each phase runs in a fresh process (fetch with dulwich, parse, replace the catalog rows in
PostgreSQL) so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_table, write_results
from streamspace.db.migrate import migrate
from streamspace_dev.postgres import LocalPostgres

TEMPLATES = 500

PHASE = """
import asyncio, json, resource, sys, time
from pathlib import Path
import psycopg
from streamspace.catalog.git import Credentials, fetch_snapshot
from streamspace.catalog.parse import parse_repository
from streamspace.db.catalog import replace_catalog

url, work, db, known = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
started = time.perf_counter()
snapshot = fetch_snapshot(url, "main", work, Credentials(), repository_id="b", allow_local=True)
fetched = time.perf_counter()
unchanged = snapshot.commit == known  # what the operator checks before parsing
parsed = parse_repository([] if unchanged else snapshot.files)
parsed_at = time.perf_counter()

async def store() -> None:
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        async with conn.transaction():
            repo_uid = "00000000-0000-0000-0000-000000000001"
            await replace_catalog(conn, repo_uid, parsed.templates, [])

if not unchanged:
    asyncio.run(store())
done = time.perf_counter()
print(json.dumps({
    "commit": snapshot.commit, "unchanged": unchanged, "templates": len(parsed.templates),
    "fetch_s": round(fetched - started, 3),
    "parse_s": round(parsed_at - fetched, 3), "store_s": round(done - parsed_at, 3),
    "total_s": round(done - started, 3),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def _generate(path: Path) -> str:
    from dulwich import porcelain  # noqa: PLC0415

    path.mkdir(parents=True)
    repo = porcelain.init(str(path))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    repo.close()
    files = []
    for i in range(TEMPLATES):
        folder = path / f"category-{i % 25}"
        folder.mkdir(exist_ok=True)
        target = folder / f"app-{i}.yaml"
        target.write_text(
            f"apiVersion: stream.streamspace.io/v1alpha1\nkind: Template\n"
            f"metadata: {{name: app-{i}}}\nspec:\n  displayName: App {i}\n"
            f"  description: {'A generated application. ' * 8}\n  category: Category {i % 25}\n"
            f"  baseImage: registry.example.com/apps/app-{i}:1.0\n"
            f"  defaultResources: {{memory: 2Gi, cpu: 1000m}}\n"
            f"  ports: [{{name: kasmvnc, containerPort: 3000}}]\n"
            f"  kasmvnc: {{enabled: true, port: 3000}}\n  tags: [generated, app{i}]\n"
        )
        files.append(str(target))
    porcelain.add(str(path), paths=files)
    author = b"Bench <bench@streamspace.invalid>"
    porcelain.commit(str(path), message=b"500 templates", author=author, committer=author)
    return f"file://{path}"


def _phase(url: str, work: Path, db: str, known_commit: str = "") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PHASE, url, str(work), db, known_commit],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamspace-bench-sync-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        url = _generate(root / "repo")
        generated = time.perf_counter() - started
        server = LocalPostgres(root / "pg")
        db = server.up()
        try:
            migrate(db)
            cold = _phase(url, root / "work", db)
            warm = _phase(url, root / "work", db, cold["commit"])
        finally:
            server.down()
    return {
        "scenario": "sync",
        "templates": TEMPLATES,
        "generate_s": round(generated, 2),
        "cold": cold,
        "no_change_resync": warm,
    }


def main() -> None:
    results = run()

    def row(phase: dict[str, Any]) -> str:
        return (
            f"{phase['total_s']} s (fetch {phase['fetch_s']}, parse {phase['parse_s']}, "
            f"store {phase['store_s']}), peak RSS {phase['peak_rss_mib']} MiB"
        )

    print_table(
        f"sync ({TEMPLATES} templates, file://, dulwich depth 1)",
        [
            ("cold sync", row(results["cold"])),
            ("no-change resync", row(results["no_change_resync"])),
            (
                "templates parsed (cold / unchanged commit: not parsed)",
                f"{results['cold']['templates']} / {results['no_change_resync']['templates']}",
            ),
        ],
    )
    print(f"\nwritten to {write_results('sync', results)}")
