"""Signing in to the cockpit with an API key, and CSRF tokens for its forms.

The session cookie (signed by Starlette's SessionMiddleware with itsdangerous) holds the key's
SHA-256, never the key; every request looks the hash up again, so a revoked key signs out within
the verifier's cache time. Each session has a CSRF token that every form posts back; the cookie
is also `SameSite=Strict`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request

from api.auth import ANONYMOUS, KeyVerifier, Principal, hash_key

SIGN_IN_SCOPE = "read_logs"
"""What a key needs to open the cockpit; approving needs `approve` as well (or `admin`)."""

Session = MutableMapping[str, Any]


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_valid(session: Session, posted: str) -> bool:
    token = session.get("csrf")
    return isinstance(token, str) and hmac.compare_digest(token.encode(), posted.encode())


def sign_in(session: Session, keys: KeyVerifier, key: str) -> Principal | str:
    """The principal now signed in, or why not."""
    principal = keys.verify(key.strip())
    if principal is None:
        return "unknown or revoked API key"
    if not principal.allows(SIGN_IN_SCOPE):
        return f"this key lacks the {SIGN_IN_SCOPE!r} scope the cockpit needs"
    session.clear()
    session["key"] = hash_key(key.strip())
    csrf_token(session)
    return principal


def signed_in(request: Request) -> Principal | None:
    """Who this request's session belongs to, if the key still verifies."""
    services = request.app.state.services
    if not services.settings.auth_enabled:
        return ANONYMOUS
    digest = request.session.get("key")
    if not isinstance(digest, str):
        return None
    principal: Principal | None = services.keys.verify_digest(digest)
    if principal is None or not principal.allows(SIGN_IN_SCOPE):
        request.session.pop("key", None)
        return None
    return principal


def flash(session: Session, message: str, kind: str = "info") -> None:
    """A message for the next page the user sees (after a redirect)."""
    session["flash"] = [kind, message]


def take_flash(session: Session) -> tuple[str, str] | None:
    found = session.pop("flash", None)
    if isinstance(found, list) and len(found) == 2:
        return str(found[0]), str(found[1])
    return None
