"""Who is calling: a user name and a role, established by the authentication middleware."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLE_RANK = {"user": 0, "operator": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    user: str
    """The user name (a DNS label, as in ``Session.spec.user``)."""
    role: str
    """``user``, ``operator`` or ``admin``."""
    via: str = "jwt"
    """How the caller authenticated: ``jwt`` or ``apikey``."""
    groups: tuple[str, ...] = field(default=(), compare=False)
    """The caller's groups: the identity provider's united with an admin's (``users``); not
    part of who the caller is (a stream is not ended when an admin changes them)."""

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def sees_everything(self) -> bool:
        """Operators and admins see and act on every user's sessions and connections."""
        return self.at_least("operator")

    @property
    def view(self) -> dict[str, Any]:
        """What ``GET /api/v1/me`` and a browser's sign-in answer."""
        return {"user": self.user, "role": self.role, "via": self.via, "groups": list(self.groups)}
