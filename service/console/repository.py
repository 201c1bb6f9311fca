"""Console sessions, found by the digest of the cookie's token."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, delete, or_, select, update

from service.models import ApiKey, ConsoleSession


def create(
    session: Session, *, token_digest: str, person: str, key_id: int, expires_at: datetime
) -> ConsoleSession:
    row = ConsoleSession(
        token_digest=token_digest, person=person, key_id=key_id, expires_at=expires_at
    )
    session.add(row)
    session.flush()
    return row


def find_with_key(session: Session, *, token_digest: str) -> tuple[ConsoleSession, ApiKey] | None:
    """The session and the key it was opened with (its scopes and revocation are read
    from the key on every request, so revoking the key ends the session)."""
    found = session.exec(
        select(ConsoleSession, ApiKey)
        .join(ApiKey, col(ApiKey.id) == col(ConsoleSession.key_id))
        .where(ConsoleSession.token_digest == token_digest)
    ).first()
    return None if found is None else (found[0], found[1])


def end(session: Session, *, token_digest: str, at: datetime) -> int:
    result = session.exec(
        update(ConsoleSession)
        .where(col(ConsoleSession.token_digest) == token_digest)
        .where(col(ConsoleSession.ended_at).is_(None))
        .values(ended_at=at)
    )
    return int(result.rowcount or 0)


def forget_before(session: Session, *, before: datetime) -> int:
    """Delete sessions that expired or ended before ``before``: no one can use them."""
    result = session.exec(
        delete(ConsoleSession).where(
            or_(col(ConsoleSession.expires_at) < before, col(ConsoleSession.ended_at) < before)
        )
    )
    return int(result.rowcount or 0)
