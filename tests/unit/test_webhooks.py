"""Repository webhooks: provider detection, signatures on the raw body, push payloads, URL keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamspace.webhooks import (
    Delivery,
    Push,
    WebhookError,
    identify,
    legacy_signature,
    matches,
    parse_push,
    repo_key,
    required_delivery_id,
    standard_signature,
    verify,
)

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-webhook"
GITHUB = Delivery("github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "push")
GITLAB = Delivery("gitlab", "13792a34-cac6-4fda-95a8-c58e00a3954e", "Push Hook")
GENERIC = Delivery("generic", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", None)
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

# Trimmed from GitHub's documented ``push`` event payload.
GITHUB_PUSH: dict[str, Any] = {
    "ref": "refs/heads/main",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    "created": False,
    "deleted": False,
    "forced": False,
    "base_ref": None,
    "compare": "https://github.com/Octo-Org/templates/compare/6113728f27ae...0d1a26e67d8f",
    "commits": [
        {
            "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "message": "Add Firefox template",
            "timestamp": "2024-05-01T12:00:00Z",
            "author": {"name": "Mona", "email": "mona@example.com", "username": "mona"},
            "added": ["browsers/firefox.yaml"],
            "removed": [],
            "modified": [],
        }
    ],
    "repository": {
        "id": 35129377,
        "name": "templates",
        "full_name": "Octo-Org/templates",
        "private": False,
        "owner": {"login": "Octo-Org", "id": 21031067, "type": "Organization"},
        "html_url": "https://github.com/Octo-Org/templates",
        "url": "https://github.com/Octo-Org/templates",
        "git_url": "git://github.com/Octo-Org/templates.git",
        "ssh_url": "git@github.com:Octo-Org/templates.git",
        "clone_url": "https://github.com/Octo-Org/templates.git",
        "default_branch": "main",
    },
    "pusher": {"name": "mona", "email": "mona@example.com"},
    "sender": {"login": "mona", "id": 21031067, "type": "User"},
}

GITHUB_PING: dict[str, Any] = {
    "zen": "Keep it logically awesome.",
    "hook_id": 109948940,
    "hook": {"type": "Repository", "id": 109948940, "events": ["push"], "active": True},
    "repository": {"full_name": "Octo-Org/templates"},
}

# Trimmed from GitLab's documented "Push Hook" payload.
GITLAB_PUSH: dict[str, Any] = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/release/1.x",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_username": "jsmith",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Templates",
        "web_url": "https://gitlab.example.com/platform/templates",
        "git_ssh_url": "git@gitlab.example.com:platform/templates.git",
        "git_http_url": "https://gitlab.example.com/platform/templates.git",
        "namespace": "Platform",
        "path_with_namespace": "platform/templates",
        "default_branch": "main",
        "homepage": "https://gitlab.example.com/platform/templates",
        "url": "git@gitlab.example.com:platform/templates.git",
        "ssh_url": "git@gitlab.example.com:platform/templates.git",
        "http_url": "https://gitlab.example.com/platform/templates.git",
    },
    "commits": [
        {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "Bump VS Code image",
            "timestamp": "2024-05-01T12:00:00+00:00",
            "url": "https://gitlab.example.com/platform/templates/-/commit/da1560886d4f",
            "author": {"name": "Jane Smith", "email": "jsmith@example.com"},
            "added": [],
            "modified": ["dev/vscode.yaml"],
            "removed": [],
        }
    ],
    "total_commits_count": 1,
    "repository": {
        "name": "Templates",
        "url": "git@gitlab.example.com:platform/templates.git",
        "homepage": "https://gitlab.example.com/platform/templates",
        "git_http_url": "https://gitlab.example.com/platform/templates.git",
        "git_ssh_url": "git@gitlab.example.com:platform/templates.git",
        "visibility_level": 0,
    },
}


def body_of(payload: object) -> bytes:
    return json.dumps(payload).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- identify -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"},
            Delivery("github", "d-1", "push"),
        ),
        ({"x-hub-signature-256": "sha256=00"}, Delivery("github", None, None)),
        ({"X-GITHUB-EVENT": "ping"}, Delivery("github", None, "ping")),
        (
            {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-1"},
            Delivery("gitlab", "u-1", "Push Hook"),
        ),
        ({"x-gitlab-token": "t"}, Delivery("gitlab", None, None)),
        ({"X-Webhook-Signature": "ab"}, Delivery("generic", None, None)),
        ({"Webhook-Id": "msg_1", "webhook-signature": "v1,x"}, Delivery("generic", "msg_1", None)),
        ({}, Delivery("generic", None, None)),
        # The legacy SHA-1 header alone does not make a GitHub delivery.
        ({"X-Hub-Signature": "sha1=00"}, Delivery("generic", None, None)),
    ],
)
def test_identify(headers: dict[str, str], expected: Delivery) -> None:
    assert identify(headers) == expected


def test_identify_prefers_github_when_both_claim() -> None:
    assert identify({"X-GitHub-Event": "push", "X-Gitlab-Token": "t"}).provider == "github"


# --- verify ---------------------------------------------------------------------------------

BODY = body_of(GITHUB_PUSH)
GOOD = sign(BODY)


@pytest.mark.parametrize(
    ("headers", "body", "ok"),
    [
        ({"X-Hub-Signature-256": f"sha256={GOOD}"}, BODY, True),
        ({"x-hub-signature-256": f"sha256={GOOD.upper()}"}, BODY, True),
        ({"X-Hub-Signature-256": f"sha256={sign(BODY, 'other')}"}, BODY, False),
        ({"X-Hub-Signature-256": f"sha256={GOOD}"}, BODY + b" ", False),
        ({}, BODY, False),
        ({"X-Hub-Signature-256": ""}, BODY, False),
        ({"X-Hub-Signature-256": GOOD}, BODY, False),  # the prefix is required
        ({"X-Hub-Signature-256": f"sha1={GOOD}"}, BODY, False),
        (
            {"X-Hub-Signature": f"sha1={hmac.new(SECRET.encode(), BODY, 'sha1').hexdigest()}"},
            BODY,
            False,
        ),
        ({"X-Hub-Signature-256": "sha256=" + "zz" * 32}, BODY, False),
        ({"X-Hub-Signature-256": f"sha256={GOOD[:-2]}"}, BODY, False),
        ({"X-Hub-Signature-256": "sha256=" + "é" * 64}, BODY, False),
        ({"X-Hub-Signature-256": "sha256=\udcff\udcfe"}, BODY, False),
        ({"X-Hub-Signature-256": "sha256=" + "\u0660" * 64}, BODY, False),  # Arabic-Indic zeros
    ],
)
def test_verify_github(headers: dict[str, str], body: bytes, ok: bool) -> None:
    assert verify(GITHUB, headers, body, SECRET, allow_unsigned=False, now=NOW) is ok
    assert verify(GITHUB, headers, body, SECRET, allow_unsigned=True, now=NOW) is ok


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"X-Gitlab-Token": SECRET}, True),
        ({"x-gitlab-token": SECRET}, True),
        ({"X-Gitlab-Token": "wrong"}, False),
        ({"X-Gitlab-Token": SECRET + " "}, False),
        ({"X-Gitlab-Token": ""}, False),
        ({}, False),
        ({"X-Gitlab-Token": "sécret"}, False),
        ({"X-Gitlab-Token": "\udcff\ud800"}, False),
    ],
)
def test_verify_gitlab(headers: dict[str, str], ok: bool) -> None:
    body = body_of(GITLAB_PUSH)
    assert verify(GITLAB, headers, body, SECRET, allow_unsigned=False, now=NOW) is ok
    assert verify(GITLAB, headers, body, SECRET, allow_unsigned=True, now=NOW) is ok


def test_gitlab_token_does_not_depend_on_the_body() -> None:
    headers = {"X-Gitlab-Token": SECRET}
    assert verify(GITLAB, headers, b"anything", SECRET, allow_unsigned=False, now=NOW)


GENERIC_BODY = body_of({"repository_url": "https://git.example.com/a/b.git", "branch": "main"})
STAMP = int(NOW.timestamp())


def standard(
    body: bytes = GENERIC_BODY,
    *,
    delivery: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    stamp: int = STAMP,
    secret: str = SECRET,
) -> dict[str, str]:
    """Standard Webhooks headers, signed as its reference libraries sign (computed here)."""
    signed = f"{delivery}.{stamp}.".encode() + body
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    value = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": delivery,
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"v1,{value}",
    }


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification (its secret, id, timestamp and body).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    then = datetime.fromtimestamp(1614265330, UTC)
    delivery = identify(headers)
    assert delivery == Delivery("generic", "msg_p5jXN8AQM9LWM0D4loKWxJek", None)
    assert verify(delivery, headers, body, secret, allow_unsigned=False, now=then)
    assert (
        standard_signature(secret, headers["webhook-id"], 1614265330, body)
        == (headers["webhook-signature"])
    )


@pytest.mark.parametrize(
    ("headers", "body", "ok"),
    [
        (standard(), GENERIC_BODY, True),
        ({k.upper(): v for k, v in standard().items()}, GENERIC_BODY, True),
        (standard(stamp=STAMP - 299), GENERIC_BODY, True),
        (standard(stamp=STAMP + 299), GENERIC_BODY, True),
        # several signatures (a key rotation): one must match
        (
            {**standard(), "webhook-signature": "v1,bm9wZQ== " + standard()["webhook-signature"]},
            GENERIC_BODY,
            True,
        ),
        (standard(secret="whsec_" + base64.b64encode(b"k" * 24).decode()), GENERIC_BODY, False),
        (standard(secret="other"), GENERIC_BODY, False),
        (standard(), GENERIC_BODY[:-1] + b" }", False),
        (standard(stamp=STAMP - 301), GENERIC_BODY, False),  # stale: a replay
        (standard(stamp=STAMP + 301), GENERIC_BODY, False),  # from the future
        ({**standard(), "webhook-id": "another-id"}, GENERIC_BODY, False),  # the id is signed
        ({**standard(), "webhook-timestamp": str(STAMP + 1)}, GENERIC_BODY, False),
        ({**standard(), "webhook-timestamp": f"{STAMP}.0"}, GENERIC_BODY, False),
        ({**standard(), "webhook-timestamp": "-1"}, GENERIC_BODY, False),
        ({**standard(), "webhook-timestamp": "9" * 40}, GENERIC_BODY, False),
        (
            {**standard(), "webhook-signature": "v2," + standard()["webhook-signature"][3:]},
            GENERIC_BODY,
            False,
        ),
        (
            {**standard(), "webhook-signature": standard()["webhook-signature"][3:]},
            GENERIC_BODY,
            False,
        ),
        ({**standard(), "webhook-signature": "v1,ü"}, GENERIC_BODY, False),
        ({k: v for k, v in standard().items() if k != "webhook-id"}, GENERIC_BODY, False),
        ({k: v for k, v in standard().items() if k != "webhook-timestamp"}, GENERIC_BODY, False),
        ({k: v for k, v in standard().items() if k != "webhook-signature"}, GENERIC_BODY, False),
        ({}, GENERIC_BODY, False),
        # the old body-only signature: refused, however right
        ({"X-Webhook-Signature": sign(GENERIC_BODY)}, GENERIC_BODY, False),
        ({"X-Webhook-Signature": f"sha256={sign(GENERIC_BODY)}"}, GENERIC_BODY, False),
    ],
)
def test_verify_generic(headers: dict[str, str], body: bytes, ok: bool) -> None:
    delivery = identify(headers)
    assert delivery.provider == "generic"
    assert verify(delivery, headers, body, SECRET, allow_unsigned=False, now=NOW) is ok
    assert verify(delivery, headers, body, SECRET, allow_unsigned=True, now=NOW) is ok


def test_tolerance_is_configurable() -> None:
    headers = standard(stamp=STAMP - 30)
    assert verify(GENERIC, headers, GENERIC_BODY, SECRET, allow_unsigned=False, now=NOW)
    assert not verify(
        GENERIC,
        headers,
        GENERIC_BODY,
        SECRET,
        allow_unsigned=False,
        now=NOW,
        tolerance=timedelta(seconds=10),
    )


def test_a_repeated_standard_header_is_refused() -> None:
    headers = {**standard(), "Webhook-Id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"}
    assert not verify(GENERIC, headers, GENERIC_BODY, SECRET, allow_unsigned=False, now=NOW)


def test_legacy_signature_is_recognised_for_a_clear_refusal() -> None:
    assert legacy_signature({"X-Webhook-Signature": "ab"})
    assert not legacy_signature(standard())
    assert not legacy_signature({})


@pytest.mark.parametrize(
    ("delivery", "missing"),
    [
        (Delivery("github", None, "push"), "X-GitHub-Delivery"),
        (Delivery("gitlab", None, "Push Hook"), "X-Gitlab-Event-UUID"),
        (Delivery("github", "", "push"), "X-GitHub-Delivery"),
        (GITHUB, None),
        (GITLAB, None),
        (GENERIC, None),
    ],
)
def test_delivery_ids_are_required(delivery: Delivery, missing: str | None) -> None:
    assert required_delivery_id(delivery) == missing


@pytest.mark.parametrize("delivery", [GITHUB, GITLAB, GENERIC])
def test_unsigned_only_when_allowed_and_no_secret(delivery: Delivery) -> None:
    assert verify(delivery, {}, BODY, None, allow_unsigned=True, now=NOW)
    assert not verify(delivery, {}, BODY, None, allow_unsigned=False, now=NOW)
    assert not verify(delivery, {}, BODY, SECRET, allow_unsigned=True, now=NOW)


def test_empty_configured_secret_refuses_everything() -> None:
    assert not verify(GITLAB, {"X-Gitlab-Token": ""}, BODY, "", allow_unsigned=True, now=NOW)
    headers = {"X-Hub-Signature-256": f"sha256={sign(BODY, '')}"}
    assert not verify(GITHUB, headers, BODY, "", allow_unsigned=True, now=NOW)


def test_repeated_signature_header_is_refused() -> None:
    # A plain dict can hold the same header under two spellings, as a multidict holds repeats.
    headers = {"X-Gitlab-Token": SECRET, "x-gitlab-token": "wrong"}
    assert not verify(GITLAB, headers, BODY, SECRET, allow_unsigned=False, now=NOW)


def test_verify_accepts_a_non_ascii_secret() -> None:
    secret = "clé-🔑"
    signature = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={signature}"}
    assert verify(GITHUB, headers, BODY, secret, allow_unsigned=False, now=NOW)
    assert verify(GITLAB, {"X-Gitlab-Token": secret}, BODY, secret, allow_unsigned=False, now=NOW)


# --- parse_push -----------------------------------------------------------------------------


def test_github_push() -> None:
    push = parse_push(GITHUB, body_of(GITHUB_PUSH))
    assert push == Push(
        (
            "https://github.com/Octo-Org/templates.git",
            "git@github.com:Octo-Org/templates.git",
            "https://github.com/Octo-Org/templates",
            "git://github.com/Octo-Org/templates.git",
        ),
        "main",
    )
    assert matches(push, "https://github.com/Octo-Org/templates", "main")
    assert matches(push, "ssh://git@github.com/Octo-Org/templates.git", "main")


def test_github_push_without_event_header_is_read_as_a_push() -> None:
    push = parse_push(Delivery("github", None, None), body_of(GITHUB_PUSH))
    assert push is not None and push.branch == "main"


def test_github_branch_with_slashes() -> None:
    push = parse_push(GITHUB, body_of({**GITHUB_PUSH, "ref": "refs/heads/feature/x"}))
    assert push is not None and push.branch == "feature/x"


@pytest.mark.parametrize(
    ("delivery", "payload"),
    [
        (Delivery("github", "d", "ping"), GITHUB_PING),
        (Delivery("github", "d", "pull_request"), GITHUB_PUSH),
        (GITHUB, {**GITHUB_PUSH, "ref": "refs/tags/v1.2.0", "base_ref": "refs/heads/main"}),
        (GITHUB, {**GITHUB_PUSH, "ref": "refs/pull/7/head"}),
        (GITHUB, {**GITHUB_PUSH, "deleted": True, "after": "0" * 40}),
        (
            Delivery("gitlab", None, "Tag Push Hook"),
            {
                **GITLAB_PUSH,
                "object_kind": "tag_push",
                "event_name": "tag_push",
                "ref": "refs/tags/v1",
            },
        ),
        (
            Delivery("gitlab", None, "Merge Request Hook"),
            {"object_kind": "merge_request", "project": GITLAB_PUSH["project"]},
        ),
        (GITLAB, {**GITLAB_PUSH, "ref": "refs/tags/v1"}),
        (GITLAB, {**GITLAB_PUSH, "after": "0" * 40, "checkout_sha": None}),
        (Delivery("gitlab", None, "Note Hook"), {"project": GITLAB_PUSH["project"]}),
    ],
)
def test_not_a_sync(delivery: Delivery, payload: dict[str, Any]) -> None:
    assert parse_push(delivery, body_of(payload)) is None


def test_gitlab_push() -> None:
    push = parse_push(GITLAB, body_of(GITLAB_PUSH))
    assert push is not None
    assert push.branch == "release/1.x"
    assert push.urls == (
        "https://gitlab.example.com/platform/templates.git",
        "git@gitlab.example.com:platform/templates.git",
        "https://gitlab.example.com/platform/templates",
    )
    assert matches(push, "https://GitLab.example.com/platform/templates/", "release/1.x")
    assert not matches(push, "https://gitlab.example.com/platform/templates", "main")


def test_gitlab_older_payload_with_repository_only() -> None:
    payload = {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "repository": {
            "name": "Diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "homepage": "http://example.com/mike/diaspora",
            "http_url": "http://example.com/mike/diaspora.git",
            "ssh_url": "git@example.com:mike/diaspora.git",
        },
    }
    push = parse_push(GITLAB, body_of(payload))
    assert push is not None
    assert push.urls == (
        "git@example.com:mike/diaspora.git",
        "http://example.com/mike/diaspora",
        "http://example.com/mike/diaspora.git",
    )
    assert matches(push, "https://example.com/mike/diaspora.git", "main")


def test_gitlab_system_hook_push() -> None:
    payload = {k: v for k, v in GITLAB_PUSH.items() if k != "object_kind"}
    push = parse_push(Delivery("gitlab", None, "System Hook"), body_of(payload))
    assert push is not None and push.branch == "release/1.x"


def test_gitlab_push_hook_header_without_object_kind() -> None:
    payload = {k: v for k, v in GITLAB_PUSH.items() if k not in ("object_kind", "event_name")}
    push = parse_push(GITLAB, body_of(payload))
    assert push is not None and push.branch == "release/1.x"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"repository_url": "https://git.example.com/a/b.git", "branch": "main"},
            Push(("https://git.example.com/a/b.git",), "main"),
        ),
        (
            {"repository_url": "https://git.example.com/a/b", "ref": "refs/heads/dev"},
            Push(("https://git.example.com/a/b",), "dev"),
        ),
        (
            {"repository_url": "https://git.example.com/a/b", "ref": "dev"},
            Push(("https://git.example.com/a/b",), "dev"),
        ),
        (
            {
                "repository_url": "https://git.example.com/a/b",
                "branch": "main",
                "ref": "refs/heads/x",
            },
            Push(("https://git.example.com/a/b",), "main"),
        ),
        (
            {"repository_url": "git@git.example.com:a/b.git"},
            Push(("git@git.example.com:a/b.git",), None),
        ),
        (
            {"repository_url": "https://git.example.com/a/b", "branch": None, "ref": None},
            Push(("https://git.example.com/a/b",), None),
        ),
        ({"repository_url": "https://git.example.com/a/b", "ref": "refs/tags/v1"}, None),
    ],
)
def test_generic(payload: dict[str, Any], expected: Push | None) -> None:
    assert parse_push(GENERIC, body_of(payload)) == expected


def test_generic_without_branch_matches_any_branch() -> None:
    push = parse_push(GENERIC, body_of({"repository_url": "https://git.example.com/a/b"}))
    assert push is not None
    assert matches(push, "https://git.example.com/a/b.git", "main")
    assert matches(push, "https://git.example.com/a/b.git", "dev")


@pytest.mark.parametrize(
    ("delivery", "body", "message"),
    [
        (GITHUB, b"{not json", "not valid JSON"),
        (GITLAB, b"", "not valid JSON"),
        (GENERIC, b"\xff\xfe\x00garbage", "not valid JSON"),
        (GENERIC, b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (GENERIC, b"1" * 5000, "not valid JSON"),  # beyond Python's integer-digits limit
        (GITHUB, b"[]", "JSON object"),
        (GITLAB, b'"push"', "JSON object"),
        (GENERIC, b"null", "JSON object"),
        (GENERIC, b"42", "JSON object"),
        (GENERIC, body_of({"branch": "main"}), "repository_url"),
        (GENERIC, body_of({"repository_url": 42}), "repository_url"),
        (GENERIC, body_of({"repository_url": ["https://x/y"]}), "repository_url"),
        (GENERIC, body_of({"repository_url": "not a url"}), "repository_url"),
        (GENERIC, body_of({"repository_url": "https://x.example/a", "branch": 1}), "branch"),
        (GENERIC, body_of({"repository_url": "https://x.example/a", "ref": {}}), "ref"),
        (GITHUB, body_of({k: v for k, v in GITHUB_PUSH.items() if k != "ref"}), "ref"),
        (GITHUB, body_of({**GITHUB_PUSH, "ref": ["refs/heads/main"]}), "ref"),
        (
            GITHUB,
            body_of({k: v for k, v in GITHUB_PUSH.items() if k != "repository"}),
            "repository",
        ),
        (GITHUB, body_of({**GITHUB_PUSH, "repository": "Octo-Org/templates"}), "repository"),
        (GITHUB, body_of({**GITHUB_PUSH, "repository": {"clone_url": 7}}), "repository.clone_url"),
        (
            GITHUB,
            body_of({**GITHUB_PUSH, "repository": {"name": "templates"}}),
            "no repository URL",
        ),
        (GITHUB, body_of({**GITHUB_PUSH, "repository": {"html_url": "nope"}}), "no valid Git"),
        (GITLAB, body_of({**GITLAB_PUSH, "project": [], "repository": None}), "project"),
        (GITLAB, body_of({"object_kind": "push", "ref": "refs/heads/main"}), "no repository URL"),
        (Delivery("gitlab", None, None), body_of({"ref": "refs/heads/main"}), "object_kind"),
        (GITLAB, body_of({**GITLAB_PUSH, "object_kind": 3}), "object_kind"),
    ],
)
def test_malformed(delivery: Delivery, body: bytes, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        parse_push(delivery, body)


def test_webhook_error_is_a_value_error() -> None:
    assert issubclass(WebhookError, ValueError)


# --- repo_key and matches -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://github.com/Org/Repo", "github.com/Org/Repo"),
        ("https://GitHub.COM/Org/Repo.git", "github.com/Org/Repo"),
        ("https://github.com/Org/Repo/", "github.com/Org/Repo"),
        ("https://github.com/Org/Repo.git/", "github.com/Org/Repo"),
        ("https://user:token@github.com:443/Org/Repo", "github.com/Org/Repo"),
        ("http://github.com/Org/Repo", "github.com/Org/Repo"),
        ("ssh://git@github.com/Org/Repo.git", "github.com/Org/Repo"),
        ("ssh://git@github.com:22/Org/Repo.git", "github.com/Org/Repo"),
        ("git+ssh://git@github.com/Org/Repo.git", "github.com/Org/Repo"),
        ("git://github.com/Org/Repo.git", "github.com/Org/Repo"),
        ("git@github.com:Org/Repo.git", "github.com/Org/Repo"),
        ("github.com:Org/Repo", "github.com/Org/Repo"),
        ("  https://github.com/Org/Repo  ", "github.com/Org/Repo"),
        ("https://git.example.com:8443/a/b", "git.example.com:8443/a/b"),
        ("ssh://git@git.example.com:2222/a/b.git", "git.example.com:2222/a/b"),
        ("https://[::1]:8443/a/b", "[::1]:8443/a/b"),
        (
            "https://gitlab.example.com/group/sub/project.git",
            "gitlab.example.com/group/sub/project",
        ),
        ("file:///srv/git/repo.git/", "file:///srv/git/repo"),
        ("file:///srv/git/repo", "file:///srv/git/repo"),
        ("/srv/git/repo.git", "file:///srv/git/repo"),
        # Not Git URLs.
        ("", None),
        ("   ", None),
        ("not a url", None),
        ("github.com/Org/Repo", None),
        ("https://github.com", None),
        ("https://github.com/", None),
        ("https:///Org/Repo", None),
        ("ftp://github.com/Org/Repo", None),
        ("https://github.com:notaport/Org/Repo", None),
        ("https://[::1/a/b", None),
        ("file://otherhost/srv/repo", None),
        ("file:///", None),
        ("git@github.com:", None),
    ],
)
def test_repo_key(url: str, key: str | None) -> None:
    assert repo_key(url) == key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/org/repo", "https://github.com/other/repo"),
        ("https://github.com/org/repo", "https://gitlab.com/org/repo"),
        ("https://github.com/org/repo", "https://github.com/org/repo2"),
        ("https://github.com/org/repo", "https://github.com:8443/org/repo"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo-fork.git"),
        ("https://github.com/org/repo", "file:///org/repo"),
    ],
)
def test_repo_key_non_equivalent(a: str, b: str) -> None:
    assert repo_key(a) != repo_key(b)


def test_matches_branch() -> None:
    push = Push(("git@github.com:org/repo.git",), "main")
    assert matches(push, "https://github.com/org/repo", "main")
    assert not matches(push, "https://github.com/org/repo", "dev")
    assert not matches(push, "https://github.com/other/repo", "main")
    assert not matches(push, "https://gitlab.com/org/repo", "main")
    assert not matches(push, "not a url", "main")


def test_matches_ignores_unparseable_urls_in_the_push() -> None:
    push = Push(("garbage", "https://github.com/org/repo.git"), "main")
    assert matches(push, "ssh://git@github.com/org/repo", "main")
    assert not matches(Push(("garbage",), None), "garbage", "main")
