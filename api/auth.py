"""API keys with scopes. Keys are random tokens; only their SHA-256 is stored (a fast hash is
enough for 256 bits of entropy — it is passwords that need slow hashes).

Scopes: `decide` (ask for decisions, drain the outbox), `simulate` (a decision's `now` may be any
time, not only close to the server clock), `feedback` (events, conversions, rewards, usage,
customer profiles and consents), `read_logs` (decision records, audit, frame status), `approve`
(frames and policies), `admin` (everything, keys and erasure). Verified keys are
cached until the key table changes, which every process checks at most every second: a
revocation takes effect within that time on every replica, and a known key costs no query.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from campaign_db.engine import Engine
from campaign_db.keys import SqlKeyStore
from optimizer.core.values import utcnow
from optimizer.ports.keys import KeyStore, NewApiKey

SCOPES = ("decide", "simulate", "feedback", "read_logs", "approve", "admin")
KEY_PREFIX = "co_"


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Principal(name="anonymous (auth disabled)", scopes=frozenset(SCOPES))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(keys: KeyStore, *, name: str, scopes: list[str], actor: str) -> tuple[int, str]:
    """A new key: returns its id and the key itself, which is not stored and not shown again."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes: unknown {unknown} (choose from {', '.join(SCOPES)})")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    stored = keys.add(
        NewApiKey(
            name=name,
            prefix=key[:10],
            key_hash=hash_key(key),
            scopes=tuple(sorted(set(scopes))),
            actor=actor,
            at=utcnow(),
        )
    )
    return stored.id, key


def create_key(engine: Engine, *, name: str, scopes: list[str], actor: str) -> tuple[int, str]:
    """`issue_key` on the database behind `engine` (the CLI's and the tests' way in)."""
    return issue_key(SqlKeyStore(engine), name=name, scopes=scopes, actor=actor)


class KeyVerifier:
    """Looks keys up by hash and caches the answers (found or not) until the key store's
    fingerprint changes; the fingerprint is read at most every `ttl` seconds."""

    def __init__(self, keys: KeyStore, *, ttl: float = 1.0) -> None:
        self.keys = keys
        self.ttl = ttl
        self._cache: dict[str, Principal | None] = {}
        self._fingerprint: tuple[int, int] | None = None
        self._checked_at = -float("inf")
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """(True, the answer) when it is known and the fingerprint fresh; no I/O, so the event
        loop may call it. (False, None) means `verify` has to ask the store."""
        if time.monotonic() - self._checked_at >= self.ttl:
            return False, None
        digest = hash_key(key)
        if digest not in self._cache:
            return False, None
        return True, self._cache.get(digest)

    def verify(self, key: str) -> Principal | None:
        """The key's principal; None for an unknown or revoked key. May read the store."""
        return self.verify_digest(hash_key(key))

    def verify_digest(self, digest: str) -> Principal | None:
        """By the key's hash: what a signed-in session keeps instead of the key itself."""
        now = time.monotonic()
        if now - self._checked_at >= self.ttl:
            fingerprint = self.keys.fingerprint()
            with self._lock:
                if fingerprint != self._fingerprint:
                    self._cache = {}
                    self._fingerprint = fingerprint
                self._checked_at = now
        cache = self._cache
        if digest in cache:
            return cache[digest]
        stored = self.keys.by_hash(digest)
        principal = (
            Principal(name=stored.name, scopes=frozenset(stored.scopes))
            if stored is not None and stored.revoked_at is None
            else None
        )
        with self._lock:
            if len(cache) > 10_000:  # unknown keys must not grow it without bound
                cache.clear()
            cache[digest] = principal
        return principal


# Declared on every route that needs a key, so the OpenAPI schema states its security and the
# "Authorize" button of /docs sends the key; either header carries the same key.
BEARER = HTTPBearer(
    scheme_name="apiKeyBearer",
    description="an API key (`campopt keys create`) as `Authorization: Bearer co_…`",
    auto_error=False,
)
HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKeyHeader",
    description="the same API key in an `X-API-Key` header",
    auto_error=False,
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
HeaderKey = Annotated[str | None, Depends(HEADER)]


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's principal if its key carries `scope` (401/403 otherwise).

    Async, like every dependency of the decision route: a sync one runs in the thread pool,
    and that hop costs more than the whole dependency.
    """

    async def dependency(
        request: Request, bearer: BearerCredentials, header: HeaderKey
    ) -> Principal:
        services = request.app.state.services
        if not services.settings.auth_enabled:
            return ANONYMOUS
        key = (bearer.credentials.strip() if bearer is not None else "") or header
        if not key:
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)")
        verifier: KeyVerifier = services.keys
        known, principal = verifier.cached(key)
        if not known:  # a store read: off the event loop
            principal = await run_in_threadpool(verifier.verify, key)
        if principal is None:
            raise HTTPException(401, "unknown or revoked API key")
        if not principal.allows(scope):
            raise HTTPException(403, f"this key lacks the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


DecideKey = Annotated[Principal, Depends(require("decide"))]
FeedbackKey = Annotated[Principal, Depends(require("feedback"))]
ReadKey = Annotated[Principal, Depends(require("read_logs"))]
ApproveKey = Annotated[Principal, Depends(require("approve"))]
AdminKey = Annotated[Principal, Depends(require("admin"))]
