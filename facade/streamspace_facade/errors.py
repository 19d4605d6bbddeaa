"""API errors: every failure leaves as ``{"error", "code", "details"}`` with its HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the client should see, with its HTTP status and a stable code."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, "details": self.details}


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message, details)


def invalid(errors: dict[str, str]) -> ApiError:
    """A request body or query that failed validation; ``errors`` maps field paths to problems."""
    summary = "; ".join(f"{path}: {problem}" for path, problem in errors.items())
    return ApiError(422, "VALIDATION_FAILED", f"invalid request: {summary}", {"fields": errors})


def unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "FORBIDDEN", message)


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{kind} {name!r} not found")


def conflict(message: str, **details: Any) -> ApiError:
    return ApiError(409, "CONFLICT", message, details)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "UNAVAILABLE", message)
