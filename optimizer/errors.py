"""Domain errors. Each names the field it is about; the API maps them to HTTP in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller can cause; `field` is a dotted path into the request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFoundError(DomainError):
    """Something the request names does not exist (404)."""


class InvalidInputError(DomainError):
    """The request is well-formed but refers to unknown keys or breaks a rule (422)."""


class ConflictError(DomainError):
    """The request contradicts what is already stored, e.g. a reused idempotency key (409)."""


class UnavailableError(DomainError):
    """A service this request needs (the model registry) cannot be reached (503)."""
