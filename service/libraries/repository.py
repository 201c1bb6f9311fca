"""Learnings libraries, their experiments and their learnings."""

from __future__ import annotations

from sqlmodel import Session, col, select

from service.models import Experiment, LearningRow, Library

DEFAULT_LIBRARY = "default"


def get_by_name(session: Session, *, name: str) -> Library | None:
    return session.exec(select(Library).where(Library.name == name)).first()


def get(session: Session, *, library_id: int) -> Library | None:
    return session.get(Library, library_id)


def add(session: Session, *, library: Library) -> Library:
    session.add(library)
    session.flush()
    return library


def list_all(session: Session) -> list[Library]:
    return list(session.exec(select(Library).order_by(col(Library.name))))


def experiments(session: Session, *, library_id: int, default: bool) -> list[Experiment]:
    """The library's experiments, oldest first (`default`: also those that name none)."""
    condition = col(Experiment.library_id) == library_id
    if default:
        condition = condition | col(Experiment.library_id).is_(None)
    stmt = select(Experiment).where(condition).order_by(col(Experiment.id))
    return list(session.exec(stmt))


def learnings(session: Session, *, library_id: int) -> list[LearningRow]:
    stmt = (
        select(LearningRow)
        .where(LearningRow.library_id == library_id)
        .order_by(col(LearningRow.id))
    )
    return list(session.exec(stmt))
