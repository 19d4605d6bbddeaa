"""Repository parsing and the Git URL guard: hostile input handled without network or cluster."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gitfixtures import PUBLIC_FORMAT, PUBLIC_FORMAT_TEMPLATES, template_yaml
from streamspace.catalog.git import (
    SUBMODULE_MODE,
    Credentials,
    RepositoryError,
    _read,
    normalize_url,
)
from streamspace.catalog.parse import Limits, parse_repository

pytestmark = pytest.mark.unit


def files(mapping: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(path, text.encode()) for path, text in mapping.items()]


def test_public_format_quirks() -> None:
    result = parse_repository(files(PUBLIC_FORMAT))
    assert {t.name for t in result.templates} == PUBLIC_FORMAT_TEMPLATES
    assert result.duplicates == [
        "firefox: kept browsers/firefox.yaml, ignored duplicates/firefox.yaml"
    ]
    assert [p.split(":")[0] for p in result.problems] == [
        "broken/bad-name.yaml",
        "broken/bad.yaml",
        "broken/no-image.yaml",
    ]
    assert result.skipped_documents == 2  # two TemplateCatalog documents
    by_name = {t.name: t for t in result.templates}
    firefox = by_name["firefox"].manifest
    assert firefox["apiVersion"] == "stream.space/v1alpha1"  # legacy group rewritten
    assert firefox["spec"]["vnc"] == {"enabled": True, "port": 3000}
    assert "kasmvnc" not in firefox["spec"]
    assert firefox["spec"]["defaultResources"] == {
        "requests": {"cpu": "1000m", "memory": "2Gi"},
        "limits": {"cpu": "1000m", "memory": "2Gi"},
    }
    assert "namespace" not in firefox["metadata"]
    assert by_name["vscode"].app_type == "webapp"
    assert by_name["gimp"].source_path == "Design, Graphics/gimp.yaml"
    assert by_name["pair-b"].source_path == "multi/pair.yaml"


def test_duplicates_are_resolved_by_path_order_whatever_the_input_order() -> None:
    forward = parse_repository(files(PUBLIC_FORMAT))
    backward = parse_repository(list(reversed(files(PUBLIC_FORMAT))))
    assert forward.templates == backward.templates


def test_alias_bomb_is_refused_quickly_with_bounded_memory() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    tracemalloc.start()
    started = time.perf_counter()
    result = parse_repository([("bomb.yaml", bomb.encode())])
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.templates == []
    assert "aliases" in result.problems[0]
    assert peak < 20 * 2**20, peak  # nothing was expanded
    assert elapsed < 5  # a guard against pathological slowness, not a benchmark


def test_deep_nesting_huge_blobs_and_many_files_are_capped() -> None:
    deep = "x: " + "[" * 200 + "]" * 200 + "\n"
    limits = Limits(max_files=3, max_blob_bytes=2048)
    big = template_yaml("big", "Big", extra="  description: " + "y" * 4096 + "\n")
    many = [(f"t{i}.yaml", template_yaml(f"t{i}", f"T{i}").encode()) for i in range(5)]
    result = parse_repository(
        [("deep.yaml", deep.encode()), ("big.yaml", big.encode()), *many], limits=limits
    )
    assert any("nested deeper" in p for p in result.problems)
    assert any("big.yaml: larger than 2048 bytes" in p for p in result.problems)
    assert any("only the first 3 are read" in p for p in result.problems)


def test_non_utf8_and_non_mapping_documents() -> None:
    result = parse_repository([("bin.yaml", b"\xff\xfe\x00"), ("list.yaml", b"- a\n- b\n")])
    assert result.templates == []
    assert result.problems == ["bin.yaml: not UTF-8 text"]


def test_plugin_manifests() -> None:
    manifest = (
        '{"name": "slack-notify", "version": "1.2.0", "displayName": "Slack", "type": "webhook",'
        ' "configSchema": {}, "permissions": [{"name": "sessions.read", "risk": "low"}]}'
    )
    result = parse_repository(
        [
            ("plugins/slack/manifest.json", manifest.encode()),
            ("plugins/bad/manifest.json", b'{"name": "bad", "version": "1", "type": "virus"}'),
            ("plugins/broken/manifest.json", b"{"),
            ("templates/x.yaml", template_yaml("x", "X").encode()),
        ],
        kind="plugin",
    )
    assert [p.name for p in result.plugins] == ["slack-notify"]
    assert result.plugins[0].plugin_type == "webhook"
    assert len(result.problems) == 2
    assert result.templates == []


@pytest.mark.parametrize(
    ("url", "allow_local", "expected"),
    [
        ("https://github.com/org/templates.git", False, "https://github.com/org/templates.git"),
        ("ssh://git@github.com/org/t.git", False, "ssh://git@github.com/org/t.git"),
        ("git@github.com:org/t.git", False, "ssh://git@github.com/org/t.git"),
        ("file:///srv/templates", True, "file:///srv/templates"),
        ("/srv/templates", True, "file:///srv/templates"),
    ],
)
def test_allowed_urls(url: str, allow_local: bool, expected: str) -> None:
    assert normalize_url(url, allow_local) == expected


@pytest.mark.parametrize(
    ("url", "allow_local", "message"),
    [
        ("http://example.com/t.git", True, "scheme 'http'"),
        ("git://example.com/t.git", True, "scheme 'git'"),
        ("ext::sh -c touch% /tmp/pwned", True, "scheme"),
        ("file:///etc", False, "local repositories are disabled"),
        ("/etc", False, "local repositories are disabled"),
        ("file://relative/path", True, "absolute path"),
        ("https://user:hunter2@example.com/t.git", False, "credentials in the URL"),
        ("https://token@example.com/t.git", False, "credentials in the URL"),
        ("ssh://-oProxyCommand=touch%20x/t.git", False, "no valid host"),
        ("ssh://-oProxyCommand=x@host/t.git", False, "no valid host"),
        ("https:///no-host", False, "no valid host"),
    ],
)
def test_refused_urls_never_connect(url: str, allow_local: bool, message: str) -> None:
    with pytest.raises(RepositoryError) as caught:
        normalize_url(url, allow_local)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_credentials_never_show_in_repr() -> None:
    creds = Credentials("basic", username="alice", password="hunter2", ssh_private_key="KEY")
    assert "hunter2" not in repr(creds) and "KEY" not in repr(creds) and "alice" not in repr(creds)


def test_symlinks_and_submodules_are_not_followed(tmp_path: Path) -> None:
    repo = Repo.init_bare(str(tmp_path / "r.git"), mkdir=True)
    store = repo.object_store
    good = Blob.from_string(template_yaml("ok", "OK").encode())
    link = Blob.from_string(b"/etc/passwd")
    for obj in (good, link):
        store.add_object(obj)
    tree = Tree()
    tree.add(b"ok.yaml", 0o100644, good.id)
    tree.add(b"link.yaml", 0o120000, link.id)
    tree.add(b"vendor.yaml", SUBMODULE_MODE, b"1" * 40)
    store.add_object(tree)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"t <t@example.invalid>"
    commit.author_time = commit.commit_time = 0
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"m"
    store.add_object(commit)
    snapshot = _read(repo, commit.id, (".yaml",), Limits())
    assert [p for p, _ in snapshot.files] == ["ok.yaml"]
    assert sorted(snapshot.skipped) == [
        "link.yaml (link or submodule, not followed)",
        "vendor.yaml (link or submodule, not followed)",
    ]


def alias_bomb(levels: int = 10, fan_out: int = 9) -> str:
    """A Template whose spec holds ``fan_out ** levels`` strings once its aliases expand, in a
    few hundred bytes and under the alias cap (the shape of the attack review's 601-byte file)."""
    lines = ["    l0: &l0 [" + ", ".join(["xxxxxxxxxxxxxxxx"] * fan_out) + "]"]
    lines += [
        f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan_out) + "]" for i in range(1, levels)
    ]
    return (
        "apiVersion: stream.space/v1alpha1\nkind: Template\nmetadata: {name: bomb}\n"
        "spec:\n  displayName: Bomb\n  baseImage: bomb:1\n  env:\n" + "\n".join(lines) + "\n"
    )


def test_alias_bomb_under_every_event_cap_is_refused_before_expanding() -> None:
    bomb = alias_bomb()
    assert len(bomb) < 1024 and bomb.count("*") < Limits().max_yaml_aliases
    tracemalloc.start()
    result = parse_repository([("bomb.yaml", bomb.encode())])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.templates == []  # nothing to store
    assert result.problems == ["bomb.yaml: more than 50000 nodes once aliases expand"]
    assert peak < 10 * 2**20, peak  # 9**10 strings were never built


def test_expanded_bytes_are_capped_and_small_aliases_still_work() -> None:
    # Few nodes, long strings: the byte side of the count refuses it.
    wide = alias_bomb(levels=3, fan_out=9).replace("xxxxxxxxxxxxxxxx", "y" * 2000)
    result = parse_repository([("wide.yaml", wide.encode())])
    assert result.problems == ["wide.yaml: larger than 262144 bytes once aliases expand"]
    assert result.templates == []
    # Aliases in reasonable measure are YAML as usual (and merge keys expand as they should).
    ok = template_yaml("ok", "OK", extra="  env: &env {A: '1'}\n  labels: {<<: *env, B: '2'}\n")
    result = parse_repository([("ok.yaml", ok.encode())])
    assert result.problems == [] and result.templates[0].manifest["spec"]["labels"] == {
        "A": "1",
        "B": "2",
    }


def test_recursive_aliases_are_refused() -> None:
    result = parse_repository([("loop.yaml", b"a: &a [1, *a]\n")])
    assert result.problems == ["loop.yaml: a recursive alias"]


def test_stored_manifests_and_bytes_parsed_per_repository_have_budgets() -> None:
    big = template_yaml("big", "Big", extra="  notes: " + "z" * 5000 + "\n")
    plugin = b'{"name": "p", "version": "1", "type": "ui", "blob": "' + b"q" * 5000 + b'"}'
    limits = Limits(max_manifest_bytes=4096)
    result = parse_repository([("big.yaml", big.encode())], limits=limits)
    assert result.templates == []
    assert result.problems[0].startswith("big.yaml: larger than 4096 bytes once aliases expand")
    plugins = parse_repository([("p/manifest.json", plugin)], kind="plugin", limits=limits)
    assert plugins.plugins == []
    assert "p: manifest of 5" in plugins.problems[0] and "larger than 4096" in plugins.problems[0]
    # One blob under many names: every name is parsed, and every parse counts.
    same = template_yaml("same", "Same").encode()
    many = [(f"copy-{i:04}.yaml", same) for i in range(1200)]
    result = parse_repository(many, limits=Limits(max_parse_bytes=20 * len(same)))
    assert [t.name for t in result.templates] == ["same"]
    assert len(result.duplicates) == 19
    assert result.problems == [
        f"copy-0020.yaml: over the {20 * len(same)} bytes parsed per repository; "
        "it and the files after it are skipped"
    ]
