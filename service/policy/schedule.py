"""Which running experiments a refresh must recompute: those whose inputs changed or aged.

A refresh reads, for every running experiment at once (three statements, whatever their
number), what its snapshot's inputs are: the settings, the arms and an aggregate of its
statistics. An experiment is due when that fingerprint differs from the one of its last
computation, when its delay corrections may have moved (its youngest cohort has aged by a
fifth since: F moves on a log scale of age), or when its newest snapshot is getting old.
Everything else is skipped without a transaction of its own, so an idle experiment costs a
row in each of those statements and nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from service.core.vocabulary import ExperimentStatus
from service.experiments import repository as experiments_repo
from service.measuring import stats_repository as stats_repo
from service.policy.inputs import ExperimentInfo
from service.policy.snapshot import Snapshot

# Snapshots are rewritten at least this often, changed or not.
MAX_SNAPSHOT_AGE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Checked:
    """What the last computation of one experiment saw."""

    fingerprint: str
    at: datetime
    # When its delay corrections may next have moved; None: not until new data.
    due: datetime | None


def running_fingerprints(session: Session) -> dict[int, str]:
    """Every running experiment's inputs, cheaply: settings, arms, a statistics aggregate."""
    experiments = experiments_repo.list_all(session, status=ExperimentStatus.RUNNING)
    ids = [e.id for e in experiments if e.id is not None]
    arms = experiments_repo.arm_states(session, experiment_ids=ids)
    stats = stats_repo.fingerprints(
        session, epochs={e.id: e.epoch for e in experiments if e.id is not None}
    )
    found: dict[int, str] = {}
    for experiment in experiments:
        assert experiment.id is not None
        parts = (
            repr(ExperimentInfo.of(experiment)),
            repr(arms[experiment.id]),
            repr(stats.get(experiment.id, stats_repo.EMPTY_FINGERPRINT)),
        )
        found[experiment.id] = "|".join(parts)
    return found


def due(
    fingerprints: Mapping[int, str],
    checked: Mapping[int, Checked],
    written: Mapping[int, datetime],
    now: datetime,
) -> list[int]:
    """The experiments to recompute, in id order."""
    return [
        experiment_id
        for experiment_id, fingerprint in sorted(fingerprints.items())
        if not _fresh(checked.get(experiment_id), fingerprint, written.get(experiment_id), now)
    ]


def _fresh(
    checked: Checked | None, fingerprint: str, written: datetime | None, now: datetime
) -> bool:
    if checked is None or checked.fingerprint != fingerprint:
        return False
    if written is not None and now - written > MAX_SNAPSHOT_AGE:
        return False
    return checked.due is None or now < checked.due


def next_due(snapshot: Snapshot | None, now: datetime) -> datetime | None:
    """When the youngest cohort has aged by a fifth: the delay corrections may have moved."""
    hint = snapshot.refresh if snapshot is not None else None
    if hint is None or hint.youngest_age_hours is None:
        return None
    return now + timedelta(hours=max(hint.youngest_age_hours / 5.0, 0.0))


def forget_gone(checked: dict[int, Checked], running: Sequence[int]) -> None:
    """Drop what was remembered of experiments no longer running."""
    for experiment_id in set(checked) - set(running):
        del checked[experiment_id]
