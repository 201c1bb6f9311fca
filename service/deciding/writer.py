"""Writing a batch of decisions so that one bad row never blocks the others.

A batch is written in one transaction with its exposures and the orphans it resolves. If
that fails for a reason about the data (text the database cannot store, a constraint), the
batch is split in halves and each half retried, down to single rows: the good rows are
written, and each row that still fails alone is returned with its reason, to be set aside.
A transient fault (the database is down, locked or busy), or any other error not about
the values written (which would refuse every row alike), is not about a row: writing stops
and ``Unwritten`` carries every row not yet written, to be kept for the next flush.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from service.core.faults import describe, is_row_fault, is_transient
from service.core.sessions import unit_of_work
from service.deciding import repository as decisions_repo
from service.deciding.bulk import insert_decisions
from service.deciding.records import DecisionRecord, exposure_deltas
from service.measuring import repository as events_repo
from service.measuring import stats_repository as stats_repo
from service.measuring.orphans import resolve_orphans
from service.models import DeadLetter

log = logging.getLogger("banditloop.decisions")

SET_ASIDE_SOURCE = "decision_log"


class Unwritten(Exception):
    """A transient fault stopped the write; ``remaining`` are the rows not written."""

    def __init__(self, remaining: list[DecisionRecord], cause: BaseException) -> None:
        super().__init__(describe(cause))
        self.remaining = remaining


@dataclass
class Written:
    rows: int = 0
    set_aside: list[tuple[DecisionRecord, str]] = field(default_factory=list)
    orphans: Counter[str] = field(default_factory=Counter)
    already: set[str] = field(default_factory=set)  # found stored: not written again


def write_decisions(
    engine: Engine,
    records: Sequence[DecisionRecord],
    *,
    maybe_stored: Collection[str] = (),
    already: set[str] | None = None,
) -> Counter[str]:
    """One transaction: the decisions, their exposures, and the orphans waiting for them.

    ``maybe_stored``: ids that another writer may have stored already (a writer process
    that died before confirming its batch). Those found stored are skipped, so neither the
    decision nor its exposure is written twice, and added to ``already``."""
    with unit_of_work(engine) as session:
        check = [r.id for r in records if r.id in maybe_stored] if maybe_stored else []
        if check:
            found = set(decisions_repo.get_many(session, ids=check))
            records = [r for r in records if r.id not in found]
            if already is not None:
                already.update(found)
        insert_decisions(session, records)
        stats_repo.add_deltas(session, deltas=exposure_deltas(records))
        # In a savepoint: a fault while counting orphans must not make the decisions look
        # refused (bisection would set them all aside). The orphans then wait for the
        # re-check after commit, or for `stats rebuild`.
        try:
            with session.begin_nested():
                return resolve_orphans(session, decisions={r.id: r for r in records})
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("decision log: orphans of %d decisions not counted", len(records))
            return Counter()


def write_isolating(
    engine: Engine, records: Sequence[DecisionRecord], *, maybe_stored: Collection[str] = ()
) -> Written:
    """Write ``records``; bisect around rows the database refuses. Raises ``Unwritten``.
    ``maybe_stored`` as in ``write_decisions``: those found stored land in ``already``."""
    done = Written()
    queue: list[list[DecisionRecord]] = [list(records)]
    while queue:
        part = queue.pop(0)
        try:
            already: set[str] = set()
            orphans = write_decisions(engine, part, maybe_stored=maybe_stored, already=already)
            done.orphans.update(orphans)
            done.already |= already
            done.rows += len(part) - len(already)
        except Exception as exc:
            if is_transient(exc) or not is_row_fault(exc):
                # Not about any row (the database is away, or a fault of ours that would
                # refuse every row alike): keep them all rather than set them all aside.
                if not is_transient(exc):
                    log.exception("decision log: write failed, not because of a row")
                raise Unwritten([r for p in [part, *queue] for r in p], exc) from exc
            if len(part) == 1:
                done.set_aside.append((part[0], describe(exc)))
                continue
            middle = len(part) // 2
            queue[:0] = [part[:middle], part[middle:]]
    return done


def set_aside(engine: Engine, refused: Sequence[tuple[DecisionRecord, str]]) -> None:
    """Keep refused decisions in the dead-letter store, where operators list them.

    The row is kept as ASCII-escaped JSON, so the text the database refused (a NUL, a lone
    surrogate) is stored as an escape sequence, not as itself."""
    rows = [
        DeadLetter(
            source=SET_ASIDE_SOURCE,
            reason=f"decision not stored: {reason}",
            event=json.dumps(record.row(), default=str, ensure_ascii=True, sort_keys=True),
        )
        for record, reason in refused
    ]
    with unit_of_work(engine) as session:
        events_repo.add_dead_letters(session, rows=rows)
