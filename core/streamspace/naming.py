"""Kubernetes naming rules as pure functions."""

from __future__ import annotations

import hashlib
import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: what a user name, a Service name or a namespace must be."""
    return len(value) <= 63 and bool(DNS_LABEL.fullmatch(value))


def is_object_name(value: str) -> bool:
    """RFC 1123 subdomain: what most Kubernetes object names (Sessions, Templates) must be."""
    return len(value) <= 253 and bool(DNS_SUBDOMAIN.fullmatch(value))


MAX_LABEL = 63
_HASH_LEN = 8


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:_HASH_LEN]


def workload_name(session: str) -> str:
    """Name of a session's Deployment, Service and Ingress.

    Service names must be DNS-1035 labels (a letter first, no dots, at most 63 characters), the
    strictest of the three kinds, so one name valid for all is derived: dots become dashes, a
    leading digit gets an ``ss-`` prefix, and a name that is still too long (or was changed at
    all, which could make two sessions collide) is cut and suffixed with a hash of the original.
    """
    name = session.replace(".", "-")
    if not name[:1].isalpha():
        name = f"ss-{name}"
    if name == session and len(name) <= MAX_LABEL:
        return name
    keep = MAX_LABEL - _HASH_LEN - 1
    return f"{name[:keep].rstrip('-')}-{_short_hash(session)}"


def label_value(value: str) -> str:
    """A label value that identifies ``value``: itself when short enough, else cut and hashed."""
    if len(value) <= MAX_LABEL:
        return value
    keep = MAX_LABEL - _HASH_LEN - 1
    return f"{value[:keep].rstrip('-._')}-{_short_hash(value)}"


def home_pvc_name(user: str) -> str:
    """The per-user home volume claim, shared by all of the user's sessions."""
    return f"home-{user}"
