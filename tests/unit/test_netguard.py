"""The SSRF guard and the credential binding of repository syncs, without a single connection.

Names resolve through a recording resolver and connections go through a recording connector:
nothing here ever reaches a non-loopback address (nor any address at all).
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from streamspace.catalog.credentials import (
    CREDENTIAL_HOST_ANNOTATION,
    CREDENTIAL_SECRET_TYPE,
    credential_host,
    credential_secret,
    credential_secret_prefix,
    credentials_from_secret,
)
from streamspace.catalog.errors import Reason, RepositoryError
from streamspace.catalog.git import Credentials, fetch_snapshot
from streamspace.catalog.netguard import NetworkGuard, refusal, same_origin
from streamspace.config import load_settings
from streamspace.naming import is_object_name

pytestmark = pytest.mark.unit

# address → (refused without ALLOW_PRIVATE_NETWORKS, refused with it)
RANGES = [
    ("10.1.2.3", True, False),
    ("172.16.0.1", True, False),
    ("172.31.255.255", True, False),
    ("172.32.0.1", False, False),
    ("192.168.1.1", True, False),
    ("100.64.0.1", True, False),  # CGNAT
    ("127.0.0.1", True, False),
    ("127.8.9.10", True, False),
    ("169.254.1.1", True, False),  # link-local
    ("169.254.169.254", True, True),  # metadata: always
    ("169.254.170.2", True, True),
    ("100.100.100.200", True, True),
    ("fd00:ec2::254", True, True),
    ("0.0.0.0", True, True),  # noqa: S104 (unspecified: always refused)
    ("::", True, True),
    ("224.0.0.1", True, True),  # multicast: always
    ("ff02::1", True, True),
    ("255.255.255.255", True, True),
    ("::1", True, False),
    ("fd12:3456::1", True, False),  # ULA
    ("fe80::1", True, False),
    ("::ffff:127.0.0.1", True, False),  # IPv4-mapped loopback
    ("::ffff:169.254.169.254", True, True),
    ("64:ff9b::a9fe:a9fe", True, True),  # NAT64 of 169.254.169.254
    ("2002:a9fe:a9fe::1", True, True),  # 6to4 of 169.254.169.254
    ("2002:0a00:0001::1", True, False),  # 6to4 of 10.0.0.1
    ("::a9fe:a9fe", True, True),  # IPv4-compatible
    ("8.8.8.8", False, False),
    ("140.82.112.3", False, False),
    ("2606:4700::1111", False, False),
]


@pytest.mark.parametrize(("address", "strict", "relaxed"), RANGES)
def test_address_ranges(address: str, strict: bool, relaxed: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert (refusal(ip, allow_private=False) is not None) == strict
    assert (refusal(ip, allow_private=True) is not None) == relaxed


class Recorder:
    """A resolver and a connector that record what they were asked and never touch a network."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return self.answers[host]

    def connect(self, address: tuple[str, int], timeout: float | None) -> socket.socket:
        self.connects.append(address)
        raise ConnectionRefusedError(111, "recorded, not connected")

    def guard(self, allow_private: bool = False) -> NetworkGuard:
        return NetworkGuard(allow_private, resolve=self.resolve, connect=self.connect)


NO_CREDENTIALS = Credentials()


def fetch(
    url: str, guard: NetworkGuard, tmp_path: Path, creds: Credentials = NO_CREDENTIALS
) -> Any:
    return fetch_snapshot(
        url, "main", tmp_path / "work", creds, repository_id="r", allow_local=False, guard=guard
    )


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("https://git.example.test/org/repo.git", {"git.example.test": ["10.0.0.5"]}),
        ("https://git.example.test/org/repo.git", {"git.example.test": ["169.254.169.254"]}),
        ("https://169.254.169.254/latest/meta-data/", {}),
        ("https://[fd00:ec2::254]/latest/meta-data/", {}),
        ("https://127.0.0.1:8443/repo.git", {}),
        ("https://[::ffff:10.0.0.1]/repo.git", {}),
        ("https://localhost/repo.git", {"localhost": ["127.0.0.1", "::1"]}),
        # one bad address among good ones refuses the name
        ("https://git.example.test/r.git", {"git.example.test": ["140.82.112.3", "10.0.0.1"]}),
        ("ssh://git@git.example.test/org/repo.git", {"git.example.test": ["192.168.0.10"]}),
        ("git@git.example.test:org/repo.git", {"git.example.test": ["172.20.0.2"]}),
    ],
)
def test_refused_addresses_are_never_connected_to(
    url: str, answers: dict[str, Sequence[str]], tmp_path: Path
) -> None:
    recorder = Recorder(answers)
    creds = Credentials("token", password="tok-never-sent")
    with pytest.raises(RepositoryError) as caught:
        fetch(url, recorder.guard(), tmp_path, creds)
    assert caught.value.reason is Reason.ADDRESS_REFUSED
    assert "ALLOW_PRIVATE_NETWORKS" in str(caught.value)
    assert recorder.connects == []


def test_metadata_stays_refused_where_private_networks_are_allowed(tmp_path: Path) -> None:
    recorder = Recorder({"meta.example.test": ["169.254.169.254"]})
    with pytest.raises(RepositoryError) as caught:
        fetch("https://meta.example.test/x.git", recorder.guard(allow_private=True), tmp_path)
    assert caught.value.reason is Reason.ADDRESS_REFUSED
    assert recorder.connects == []


def test_the_name_is_resolved_once_and_the_address_pinned(tmp_path: Path) -> None:
    """A rebinding DNS server gets one question; every connection goes to its first answer."""
    recorder = Recorder({"git.example.test": ["203.0.113.9"]})
    with pytest.raises(RepositoryError) as caught:
        fetch("https://git.example.test/org/repo.git", recorder.guard(), tmp_path)
    assert caught.value.reason is Reason.FETCH_FAILED
    assert recorder.lookups == ["git.example.test"]
    assert recorder.connects and set(recorder.connects) == {("203.0.113.9", 443)}


def test_failures_say_no_more_than_their_category(tmp_path: Path) -> None:
    """Unknown name and refused connection read the same: no port scanner, no remote text."""
    unknown = Recorder({})
    refused = Recorder({"git.example.test": ["203.0.113.9"]})
    messages = []
    for recorder in (unknown, refused):
        with pytest.raises(RepositoryError) as caught:
            fetch("https://git.example.test/org/repo.git", recorder.guard(), tmp_path)
        assert caught.value.reason is Reason.FETCH_FAILED
        messages.append(str(caught.value))
    assert "refused" not in " ".join(messages) and "111" not in " ".join(messages)


def test_numeric_host_spellings_are_judged_by_their_address(tmp_path: Path) -> None:
    def numeric_only(host: str, port: int) -> list[str]:  # no DNS query, ever
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [str(info[4][0]) for info in infos]

    connects: list[tuple[str, int]] = []

    def connect(address: tuple[str, int], timeout: float | None) -> socket.socket:
        connects.append(address)
        raise ConnectionRefusedError

    guard = NetworkGuard(False, resolve=numeric_only, connect=connect)
    for url in ("https://2130706433/r.git", "https://0x7f.1/r.git", "https://0177.0.0.1/r.git"):
        with pytest.raises(RepositoryError) as caught:
            fetch(url, guard, tmp_path)
        assert caught.value.reason is Reason.ADDRESS_REFUSED, url
    assert connects == []


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("https://git.example.test/a/info/refs", True),
        ("https://GIT.example.test:443/b", True),
        ("https://git.example.test./b", True),
        ("http://git.example.test/a", False),
        ("https://git.example.test:8443/a", False),
        ("https://other.example.test/a", False),
        ("https://git.example.test.evil.test/a", False),
        ("https://git.example.test@evil.test/a", False),
        ("https://[::1]/a", False),
    ],
)
def test_redirect_targets(url: str, same: bool) -> None:
    pinned = (
        Recorder({"git.example.test": ["203.0.113.9"]}).guard().pin("https://git.example.test/r")
    )
    assert same_origin(pinned, url) is same


def test_the_setting() -> None:
    assert load_settings({}).network.allow_private_networks is False
    on = load_settings({"ALLOW_PRIVATE_NETWORKS": "true"})
    assert on.network.allow_private_networks is True


# --- credentials ------------------------------------------------------------------------------

URL = "https://git.example.test/org/repo.git"


def secret(**changes: Any) -> dict[str, Any]:
    body = credential_secret("repo-auth", URL, {"token": "t0ken"}, {})
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (URL, "git.example.test:443"),
        ("https://GIT.example.test:8443/x", "git.example.test:8443"),
        ("ssh://git@git.example.test/x", "git.example.test:22"),
        ("git@git.example.test:org/x.git", "git.example.test:22"),
        ("https://[2001:db8::1]/x", "[2001:db8::1]:443"),
    ],
)
def test_credential_hosts(url: str, host: str) -> None:
    assert credential_host(url) == host


def test_a_credential_secret_serves_its_own_host_only() -> None:
    body = secret()
    assert body["type"] == CREDENTIAL_SECRET_TYPE
    assert body["metadata"]["annotations"] == {CREDENTIAL_HOST_ANNOTATION: "git.example.test:443"}
    assert base64.b64decode(body["data"]["token"]) == b"t0ken"
    assert credentials_from_secret(body, "repo-auth", "token", URL).password == "t0ken"
    for other in (
        "https://evil.example.test/org/repo.git",
        "https://git.example.test:8443/org/repo.git",
        "ssh://git@git.example.test/org/repo.git",
    ):
        with pytest.raises(RepositoryError) as caught:
            credentials_from_secret(body, "repo-auth", "token", other)
        assert caught.value.reason is Reason.CREDENTIAL_REFUSED


@pytest.mark.parametrize(
    ("repository", "prefix"),
    [
        ("templates", "templates-auth-"),
        ("r" * 52, "r" * 52 + "-auth-"),
        ("r" * 58, "r" * 52 + "-auth-"),  # the longest name the API accepts
        ("a" * 51 + "-b", "a" * 51 + "-auth-"),  # no "--" where it was cut
        ("org.templates", "org.templates-auth-"),  # made with kubectl: dots
        ("x" * 51 + ".org", "x" * 51 + "-auth-"),
    ],
)
def test_credential_secret_names(repository: str, prefix: str) -> None:
    """The API server completes the prefix with 5 characters: a name of at most 63."""
    assert credential_secret_prefix(repository) == prefix
    assert is_object_name(prefix + "b2c4d") and len(prefix + "b2c4d") <= 63


def test_a_credential_secret_can_be_owned_by_its_repository() -> None:
    repository = {"metadata": {"name": "templates", "uid": "0b1c"}}
    body = credential_secret(
        "templates-auth-", URL, {"token": "t"}, {}, repository, generate_name=True
    )
    assert body["metadata"]["generateName"] == "templates-auth-"
    assert "name" not in body["metadata"]
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "stream.space/v1alpha1",
            "kind": "TemplateRepository",
            "name": "templates",
            "uid": "0b1c",
        }
    ]  # no blockOwnerDeletion: that would need permission on the repository's finalizers
    assert "ownerReferences" not in secret()["metadata"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        secret(type="Opaque"),
        secret(type="kubernetes.io/service-account-token"),
        secret(metadata={"name": "repo-auth"}),  # no host annotation
    ],
)
def test_other_secrets_are_refused(body: dict[str, Any] | None) -> None:
    with pytest.raises(RepositoryError) as caught:
        credentials_from_secret(body, "repo-auth", "token", URL)
    assert caught.value.reason is Reason.CREDENTIAL_REFUSED
    assert "t0ken" not in str(caught.value)
