"""Kubernetes resource quantities (``500m``, ``2``, ``4Gi``, ``1e3``), parsed exactly to compare.

Pure. The accepted grammar is the one the CRDs declare for ``resources`` (and Kubernetes itself
accepts), so a value this module refuses is one the API server would refuse too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, DecimalException

PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""The quantity pattern of the CRDs' ``resources`` (``crds/``)."""

_QUANTITY = re.compile(PATTERN)
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{f"{p}i": Decimal(1024) ** (i + 1) for i, p in enumerate("KMGTPE")},
}


@dataclass(frozen=True)
class Quantity:
    """A quantity as written (for messages) and its exact value (for comparisons)."""

    text: str
    value: Decimal

    def __str__(self) -> str:
        return self.text


def parse_quantity(raw: str | int | float) -> Quantity:
    """``raw`` as a ``Quantity``; ValueError when Kubernetes would not accept it either."""
    text = str(raw).strip()
    number = _NUMBER.match(text)
    if isinstance(raw, bool) or number is None or not _QUANTITY.match(text):
        raise ValueError(f"invalid quantity {text!r}: expected e.g. 500m, 2 or 4Gi")
    suffix = text[number.end() :]
    try:
        if suffix[:1] in {"e", "E"}:
            value = Decimal(number.group()).scaleb(int(suffix[1:]))
        else:
            value = Decimal(number.group()) * _SUFFIXES[suffix]
    except (DecimalException, KeyError, ValueError):
        raise ValueError(f"invalid quantity {text!r}") from None
    return Quantity(text, value)
