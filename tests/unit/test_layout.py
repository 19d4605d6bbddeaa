"""The repository layout guards: source roots, the stdlib `operator`, CRD descriptions."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamspace.cli import build_parser
from streamspace.db.migrate import available_migrations
from streamspace_dev.binaries import staging_replacements

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_source_roots_are_not_packages() -> None:
    for root in ("core", "operator", "facade"):
        assert not (REPO / root / "__init__.py").exists()


@pytest.mark.parametrize("flags", [[], ["-m", "pytest", "--version"]])
def test_import_operator_is_the_standard_library_from_the_repo_root(flags: list[str]) -> None:
    """Running from the repository root must not let ./operator shadow the stdlib module."""
    code = (
        "import operator, sys, sysconfig; "
        "assert operator.__file__.startswith(sysconfig.get_paths()['stdlib']), operator.__file__; "
        "assert callable(operator.itemgetter); "
        "import streamspace_operator; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    if flags:  # pytest itself, started from the root, still sees the stdlib module
        run = subprocess.run([sys.executable, *flags], cwd=REPO, capture_output=True, check=False)
        assert run.returncode == 0


def test_cli_has_every_subcommand() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == {"operator", "facade", "watch", "migrate", "dev", "token"}


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_staging_replacements_come_from_the_downloaded_gomod() -> None:
    gomod = """module k8s.io/kubernetes

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/other/thing => github.com/other/thing v1.0.0
)
replace k8s.io/kms => ./staging/src/k8s.io/kms
"""
    assert staging_replacements(gomod, "v1.36.3") == [
        "replace k8s.io/api => k8s.io/api v0.36.3",
        "replace k8s.io/client-go => k8s.io/client-go v0.36.3",
        "replace k8s.io/kms => k8s.io/kms v0.36.3",
    ]


def _undescribed(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, sub in (schema.get("properties") or {}).items():
        if name == "metadata":
            continue
        if not sub.get("description"):
            missing.append(f"{path}.{name}")
        missing += _undescribed(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        missing += _undescribed(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        missing += _undescribed(schema["additionalProperties"], f"{path}{{}}")
    return missing


STREAMSPACE_CRDS = sorted(
    p
    for p in (REPO / "crds").glob("*.yaml")
    if any(
        d.get("kind") == "CustomResourceDefinition" and d["spec"]["group"] == "stream.space"
        for d in yaml.safe_load_all(p.read_text())
    )
)


def test_the_six_crds_exist() -> None:
    kinds = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in STREAMSPACE_CRDS}
    assert kinds == {
        "Session",
        "Template",
        "Connection",
        "TemplateRepository",
        "Plugin",
        "SessionQuota",
    }


@pytest.mark.parametrize("path", STREAMSPACE_CRDS, ids=lambda p: p.stem)
def test_every_crd_field_has_a_description(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["names"]["categories"] == ["streamspace"]
    for version in crd["spec"]["versions"]:
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert schema.get("description")
        assert _undescribed(schema, "") == []


def test_the_product_does_not_ship_or_import_the_dev_tooling() -> None:
    product = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert product["tool"]["setuptools"]["packages"]["find"]["where"] == [
        "core",
        "operator",
        "facade",
    ]
    assert all(
        "dev" not in pattern
        for pattern in product["tool"]["setuptools"]["package-data"]["streamspace"]
    )
    assert not (REPO / "core" / "streamspace" / "dev").exists()
    contracts = product["tool"]["importlinter"]["contracts"]
    assert any(
        c["type"] == "forbidden"
        and set(c["source_modules"])
        == {"streamspace", "streamspace_operator", "streamspace_facade"}
        and c["forbidden_modules"] == ["streamspace_dev"]
        for c in contracts
    )
    dev = tomllib.loads((REPO / "devtools" / "pyproject.toml").read_text())
    assert dev["project"]["entry-points"]["streamspace.commands"] == {
        "dev": "streamspace_dev.cli:register"
    }


def test_product_code_never_reaches_into_the_repository() -> None:
    for root in ("core", "operator", "facade"):
        for path in (REPO / root).rglob("*.py"):
            assert "parents[" not in path.read_text(), path


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by their file name (rootdir ``prepend``): two directories'
    files of one name make the whole run fail at collection."""
    names: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("*.py"):
        if path.name not in ("conftest.py", "__init__.py"):
            names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
