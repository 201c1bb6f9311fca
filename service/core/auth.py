"""API keys: long random strings, stored as SHA-256 digests, cached in memory, revocable."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from service.core import auth_repository as keys_repo
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from service.core.sessions import unit_of_work
from service.models import ApiKey

SCOPES = ("decide", "ingest", "review", "admin")
KEY_PREFIX = "bl_"

log = logging.getLogger("banditloop.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(scopes: list[str] | str) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    cleaned = sorted({s.strip() for s in items if s.strip()})
    if not cleaned:
        raise InvalidInput("at least one scope is needed", field="scopes")
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown:
        raise InvalidInput(
            f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}", field="scopes"
        )
    return cleaned


class ApiKeys:
    """Authenticates bearer keys through a short-lived in-memory cache of digests.

    A key in use is re-read ahead of its expiry: the first request that finds its entry
    past half the cache time starts a re-read in a thread of its own and is answered from
    the cache. Otherwise every request arriving while the entry was stale read the key
    itself, each waiting for the database (on SQLite, for the write lock a decision-log
    flush or a policy refresh holds): a pause every ``cache_seconds`` that set /choose's
    p99. A key is still trusted for at most ``cache_seconds`` after it was last read.
    """

    def __init__(
        self, engine: Engine, *, cache_seconds: float, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()  # digests being re-read ahead of expiry
        self._generation = 0  # bumped by forget(): a re-read begun before must not undo it

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <api key>", field="authorization")
        scheme, _, raw = authorization.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise Unauthorized("Authorization must be `Bearer <api key>`", field="authorization")
        key_digest = digest(raw.strip())
        now = time.monotonic()
        cached = self._cache.get(key_digest)
        if cached is not None and now - cached[1] < self._ttl:
            principal = cached[0]
        else:
            principal = self._lookup(key_digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key_digest] = (principal, now)
        if principal is None:
            raise Unauthorized("unknown or revoked API key", field="authorization")
        return principal

    def cached(self, authorization: str | None, scope: str) -> Principal | None:
        """The principal from the in-memory cache, without touching the database; None when
        the key is not cached (or stale, or lacks the scope): then call ``require``."""
        if not authorization or self._ttl <= 0:
            return None
        scheme, _, raw = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        key_digest = digest(raw.strip())
        cached = self._cache.get(key_digest)
        if cached is None or cached[0] is None:
            return None
        age = time.monotonic() - cached[1]
        if age >= self._ttl:
            return None
        if age >= self._ttl / 2:
            self._refresh_ahead(key_digest)
        return cached[0] if cached[0].allows(scope) else None

    def _refresh_ahead(self, key_digest: str) -> None:
        with self._lock:
            if key_digest in self._refreshing:
                return
            self._refreshing.add(key_digest)
            generation = self._generation
        threading.Thread(
            target=self._refresh, args=(key_digest, generation), name="api-key-refresh", daemon=True
        ).start()

    def _refresh(self, key_digest: str, generation: int) -> None:
        """Re-read one cached key; on failure the entry simply expires as before."""
        started = time.monotonic()
        principal: Principal | None = None
        try:
            principal = self._lookup(key_digest)
        except Exception:
            log.warning("API key not re-read ahead of its expiry", exc_info=True)
            failed = True
        else:
            failed = False
        with self._lock:
            self._refreshing.discard(key_digest)
            if not failed and generation == self._generation:
                self._cache[key_digest] = (principal, started)

    def require(self, authorization: str | None, scope: str) -> Principal:
        principal = self.authenticate(authorization)
        if not principal.allows(scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope", field="authorization")
        return principal

    def _lookup(self, key_digest: str) -> Principal | None:
        with self._transaction() as session:
            row = keys_repo.find_by_digest(session, digest=key_digest)
            if row is None or row.revoked_at is not None or row.id is None:
                return None
            # Compared in constant time although the lookup was by digest: cheap insurance.
            if not hmac.compare_digest(row.digest, key_digest):
                return None
            return Principal(row.id, row.name, frozenset(row.scopes.split(",")))

    def _transaction(self) -> AbstractContextManager[Session]:
        # Authentication is the request's first step, before its own session opens.
        return unit_of_work(self._engine, clock=self._clock)

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def create(
        self, *, name: str, scopes: list[str] | str, raw_key: str | None = None
    ) -> tuple[ApiKey, str]:
        cleaned = parse_scopes(scopes)
        raw = raw_key or generate_key()
        with self._transaction() as session:
            row = keys_repo.create(
                session, name=name, prefix=raw[:10], digest=digest(raw), scopes=",".join(cleaned)
            )
        return row, raw

    def list(self) -> list[ApiKey]:
        with self._transaction() as session:
            return keys_repo.list_all(session)

    def revoke(self, key_id: int) -> ApiKey:
        with self._transaction() as session:
            row = keys_repo.get(session, key_id=key_id)
            if row is None:
                raise NotFound(f"no API key with id {key_id}", field="key_id")
            keys_repo.revoke(session, key=row)
        self.forget()
        return row

    def bootstrap(self, raw_key: str) -> bool:
        """Install ``raw_key`` as the first admin key if no key exists yet."""
        # Every worker of `serve --workers N` runs this at once on a fresh database: the
        # insert skips a digest another worker stored first instead of failing its start.
        with self._transaction() as session:
            if keys_repo.count(session) > 0:
                return False
            return keys_repo.create_unless_exists(
                session,
                name="bootstrap admin",
                prefix=raw_key[:10],
                digest=digest(raw_key),
                scopes="admin",
            )
