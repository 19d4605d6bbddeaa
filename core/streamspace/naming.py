"""Kubernetes naming rules as pure functions."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: what a user name, a Service name or a namespace must be."""
    return len(value) <= 63 and bool(DNS_LABEL.match(value))


def is_object_name(value: str) -> bool:
    """RFC 1123 subdomain: what most Kubernetes object names (Sessions, Templates) must be."""
    return len(value) <= 253 and bool(DNS_SUBDOMAIN.match(value))
