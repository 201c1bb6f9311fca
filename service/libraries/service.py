"""Learnings libraries: the domain behind `/v1/libraries`, and what a loop run reads from
and writes to its experiment's library.

An experiment names the library it reads and feeds (`library`, "default" when it names
none); a library is created the first time an experiment names it. The library's rules
(item operations, fading, the cap, the Markdown file) are in `variants.learnings` and
`variants.library`; the cross-campaign tag effects in `bandits.library_effects`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from bandits.library_effects import CampaignTagModel, fit_campaign_tag_model
from bandits.posterior import beta_posterior, pooled_prior
from service.core.errors import NotFound
from service.core.vocabulary import EXPOSURE, success_metric
from service.experiments import repository as experiments_repo
from service.libraries import repository as repo
from service.measuring import stats_repository as stats_repo
from service.models import Experiment, LearningRow, Library, as_utc
from variants.inputs import LibraryArm
from variants.learnings import Evidence, Learning, LearningStatus, Verdict
from variants.library import fade

DEFAULT_LIBRARY = repo.DEFAULT_LIBRARY
PRIOR_STRENGTH = 2.0


def resolve(session: Session, name: str | None) -> Library:
    """The library called `name` (the default one for None), created on first use."""
    wanted = name or DEFAULT_LIBRARY
    library = repo.get_by_name(session, name=wanted)
    if library is None:
        library = repo.add(session, library=Library(name=wanted))
    return library


def get_library(session: Session, name: str) -> Library:
    library = repo.get_by_name(session, name=name)
    if library is None:
        if name == DEFAULT_LIBRARY:
            return resolve(session, name)
        raise NotFound(f"unknown library {name!r}", field="library")
    return library


def library_of(session: Session, experiment: Experiment) -> Library:
    if experiment.library_id is not None:
        library = repo.get(session, library_id=experiment.library_id)
        if library is not None:
            return library
    return resolve(session, None)


def experiments_of(session: Session, library: Library) -> list[Experiment]:
    assert library.id is not None
    return repo.experiments(session, library_id=library.id, default=library.name == DEFAULT_LIBRARY)


# -- learnings ----------------------------------------------------------------------------


def learning_rows(session: Session, library: Library) -> list[LearningRow]:
    assert library.id is not None
    return repo.learnings(session, library_id=library.id)


def learning_of(row: LearningRow) -> Learning:
    """A stored learning as the library's rules see it (bad evidence items are skipped)."""
    evidence = [item for item in (_parse(Evidence, raw) for raw in row.evidence or []) if item]
    holds = [item for item in (_parse(Verdict, raw) for raw in row.holds or []) if item]
    failed = [item for item in (_parse(Verdict, raw) for raw in row.failed or []) if item]
    return Learning(
        id=row.key,
        claim=row.claim,
        evidence=evidence,
        support=max(0, row.support),
        status=LearningStatus(row.status),
        created_at=as_utc(row.created_at),
        last_confirmed_at=as_utc(row.last_confirmed_at),
        status_reason=row.status_reason,
        holds=holds,
        failed=failed,
        channel=row.channel,
    )


def _parse(model: type[Any], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValueError:  # a row written by hand: keep the claim, skip the bad item
        return None


def learnings(session: Session, library: Library) -> list[Learning]:
    rows = learning_rows(session, library)
    keys = {row.id: row.key for row in rows}
    return [
        learning_of(row).model_copy(update={"superseded_by": keys.get(row.superseded_by)})
        if row.superseded_by
        else learning_of(row)
        for row in rows
    ]


def faded(session: Session, library: Library, *, now: datetime) -> tuple[list[Learning], list[str]]:
    """The library's learnings with the faded ones pruned (not written), and their ids."""
    state, pruned = fade(
        learnings(session, library), now=now, half_life_days=library.half_life_days
    )
    return state, [op.learning_id for op in pruned]


def save(
    session: Session,
    library: Library,
    *,
    experiment_id: int,
    learnings: Sequence[Learning],
) -> list[str]:
    """Write the learnings that are new or changed, item by item; return their ids."""
    assert library.id is not None
    rows = {row.key: row for row in learning_rows(session, library)}
    changed: list[str] = []
    for item in learnings:
        values: dict[str, Any] = {
            "claim": item.claim,
            "evidence": [evidence.model_dump() for evidence in item.evidence],
            "support": item.support,
            "status": item.status.value,
            "status_reason": item.status_reason,
            "created_at": item.created_at,
            "last_confirmed_at": item.last_confirmed_at,
            "holds": [verdict.model_dump(mode="json") for verdict in item.holds],
            "failed": [verdict.model_dump(mode="json") for verdict in item.failed],
            "channel": item.channel,
        }
        row = rows.get(item.id)
        if row is None:
            row = LearningRow(
                experiment_id=experiment_id, library_id=library.id, key=item.id, **values
            )
        elif all(_same(getattr(row, name), value) for name, value in values.items()):
            continue
        else:
            for name, value in values.items():
                setattr(row, name, value)
        session.add(row)
        session.flush()
        rows[item.id] = row
        changed.append(item.id)
    for item in learnings:
        if item.superseded_by and item.superseded_by in rows:
            row = rows[item.id]
            if row.superseded_by != rows[item.superseded_by].id:
                row.superseded_by = rows[item.superseded_by].id
                session.add(row)
    session.flush()
    return changed


def _same(stored: Any, new: Any) -> bool:
    if isinstance(stored, datetime) and isinstance(new, datetime):
        return bool(as_utc(stored) == as_utc(new))
    return bool(stored == new)


# -- arms of the library's campaigns ------------------------------------------------------


def arm_counts(
    session: Session, experiment: Experiment, *, segment: str | None = None
) -> dict[int, tuple[int, int]]:
    """(exposures, successes) of each arm in the experiment's current epoch (one segment's
    when given), summed over hours."""
    assert experiment.id is not None
    metric = success_metric(experiment.primary_metric, experiment.conversion_name)
    rows = stats_repo.rows_for(
        session, experiment_id=experiment.id, epoch=experiment.epoch, metrics=[EXPOSURE, metric]
    )
    counts: dict[int, list[int]] = {}
    for row in rows:
        if segment is not None and row.segment != segment:
            continue
        entry = counts.setdefault(row.arm_id, [0, 0])
        entry[0 if row.metric == EXPOSURE else 1] += row.count
    return {arm_id: (n, min(s, n)) for arm_id, (n, s) in counts.items()}


def library_arms(
    session: Session,
    library: Library,
    *,
    exclude_experiment_id: int | None,
    min_exposures: int,
    min_successes: int,
) -> list[LibraryArm]:
    """Arms of the library's other experiments with the minimum sample, most exposed first,
    with a weak-prior Beta posterior over their raw counts (as the loop's fallback figures)."""
    found: list[LibraryArm] = []
    for experiment in experiments_of(session, library):
        if experiment.id is None or experiment.id == exclude_experiment_id:
            continue
        counts = arm_counts(session, experiment)
        arms = {
            arm.id: arm
            for arm in experiments_repo.arms(session, experiment_id=experiment.id)
            if arm.id is not None
        }
        ids = [arm_id for arm_id in counts if arm_id in arms]
        if not ids:
            continue
        n = np.array([counts[i][0] for i in ids], dtype=np.float64)
        s = np.array([counts[i][1] for i in ids], dtype=np.float64)
        alpha, beta = pooled_prior(s, n, PRIOR_STRENGTH)
        posterior = beta_posterior(s, n, alpha, beta)
        low, high = posterior.credible_interval(0.95)
        for i, arm_id in enumerate(ids):
            if n[i] < min_exposures or s[i] < min_successes:
                continue
            found.append(
                LibraryArm(
                    evidence=Evidence(
                        arm_id=arm_id,
                        exposures=int(n[i]),
                        successes=int(s[i]),
                        effect=float(posterior.mean[i]),
                        ci_low=float(low[i]),
                        ci_high=float(high[i]),
                        observed_rate=round(float(s[i] / n[i]), 6) if n[i] else None,
                        maturity=None,
                        experiment_key=experiment.key,
                    ),
                    content=arms[arm_id].content,
                    tags=list(arms[arm_id].tags or []),
                )
            )
    found.sort(key=lambda item: -item.evidence.exposures)
    return found


def tag_model(
    session: Session,
    library: Library,
    *,
    segment: str | None = None,
    min_exposures: int = 500,
    channel: str | None = None,
) -> CampaignTagModel | None:
    """The cross-campaign tag model over every arm of the library's experiments (of one
    channel, one segment when given) with at least `min_exposures`."""
    successes: list[int] = []
    exposures: list[int] = []
    tags: list[list[str]] = []
    campaigns: list[str] = []
    for experiment in experiments_of(session, library):
        if experiment.id is None or (channel is not None and experiment.channel != channel):
            continue
        counts = arm_counts(session, experiment, segment=segment)
        for arm in experiments_repo.arms(session, experiment_id=experiment.id):
            if arm.id is None or arm.id not in counts:
                continue
            n, s = counts[arm.id]
            exposures.append(n)
            successes.append(s)
            tags.append(list(arm.tags or []))
            campaigns.append(experiment.key)
    if not exposures:
        return None
    return fit_campaign_tag_model(
        np.array(successes), np.array(exposures), tags, campaigns, min_exposures=min_exposures
    )
