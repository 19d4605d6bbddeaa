"""Why a repository sync failed: a category (the Ready condition's reason) and a safe message.

Messages are written by us, never copied from what a remote server or a library said: a remote
server's bytes must not reach anyone through the status (issue 13, SSRF), and errors must not
tell connection refused from a TLS or certificate failure (that makes a port scanner).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Failure categories, used as the ``Ready`` condition's reason and the Event reason."""

    SYNC_FAILED = "SyncFailed"
    """Anything else: the repository's content broke a limit, no database, ..."""
    INVALID_URL = "InvalidURL"
    """The URL is refused before any connection (scheme, local path, credentials inside)."""
    ADDRESS_REFUSED = "AddressRefused"
    """The host resolves to a refused address range (see ``netguard``)."""
    REDIRECT_REFUSED = "RedirectRefused"
    """The server redirected to another scheme, host or port."""
    CREDENTIAL_REFUSED = "CredentialRefused"
    """``auth.secretRef`` names no repository credential, or one bound to another host."""
    AUTH_FAILED = "AuthFailed"
    """The server refused the credentials (or asked for some)."""
    NOT_FOUND = "NotFound"
    """The server has no such repository, or the repository no such branch."""
    FETCH_FAILED = "FetchFailed"
    """Name resolution, connection, TLS, certificate or protocol failure: deliberately one."""


FETCH_FAILED_MESSAGE = (
    "fetch failed: the repository could not be fetched (name resolution, connection, TLS "
    "or Git protocol failure; the operator's debug log has details)"
)
AUTH_FAILED_MESSAGE = "fetch failed: the server refused the credentials or asked for some"
NOT_FOUND_MESSAGE = "fetch failed: the server has no repository at this URL"


class RepositoryError(RuntimeError):
    """The repository could not be synced; the message is safe to show (no credentials, no
    remote bytes) and ``reason`` says which kind of failure it was."""

    def __init__(self, message: str, reason: Reason = Reason.SYNC_FAILED) -> None:
        super().__init__(message)
        self.reason = reason
