"""API keys, stored only as SHA-256 digests."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from service.core.sessions import now as now_of
from service.core.statements import insert_ignore, table_of
from service.models import ApiKey


def create(session: Session, *, name: str, prefix: str, digest: str, scopes: str) -> ApiKey:
    key = ApiKey(name=name, prefix=prefix, digest=digest, scopes=scopes)
    session.add(key)
    session.flush()
    return key


def create_unless_exists(
    session: Session, *, name: str, prefix: str, digest: str, scopes: str
) -> bool:
    """Insert the key unless its digest is stored already (insert-or-ignore); True if new."""
    row = {"name": name, "prefix": prefix, "digest": digest, "scopes": scopes}
    return bool(
        insert_ignore(session, table_of(ApiKey), [row], conflict=["digest"], returning=["id"])
    )


def find_by_digest(session: Session, *, digest: str) -> ApiKey | None:
    return session.exec(select(ApiKey).where(ApiKey.digest == digest)).first()


def get(session: Session, *, key_id: int) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_all(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))))


def count(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(ApiKey)).one())


def revoke(session: Session, *, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = now_of(session)
        session.add(key)
        session.flush()
    return key
