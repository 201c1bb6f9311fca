"""Learnings libraries: the domain behind `/v1/libraries`, and what a loop run reads from
and writes to its experiment's library.

An experiment names the library it reads and feeds (`library`, "default" when it names
none); a library is created the first time an experiment names it. The library's rules
(item operations, fading, the cap, the Markdown file) are in `variants.learnings` and
`variants.library`; the cross-campaign tag effects in `bandits.library_effects`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from bandits.library_effects import CampaignTagModel, fit_campaign_tag_model
from bandits.posterior import beta_posterior, pooled_prior
from service.core.errors import NotFound
from service.core.sessions import now as now_of
from service.core.vocabulary import EXPOSURE, success_metric
from service.libraries import repository as repo
from service.libraries.schemas import LibrarySettings
from service.models import Arm, Experiment, LearningRow, Library, as_utc
from variants.inputs import LibraryArm
from variants.learnings import Evidence, Learning, LearningStatus, Verdict, enforce_cap
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
        tags=[str(tag) for tag in row.tags or [] if isinstance(tag, str)],
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


def update_settings(
    session: Session, name: str, patch: LibrarySettings, *, actor: str
) -> tuple[Library, list[str]]:
    """Change a library's description, cap or half-life; a lowered cap and a shorter
    half-life apply at once (the same rules a loop run applies: faded claims pruned, then
    the least supported over the cap). Returns the library and the ids pruned."""
    library = get_library(session, name)
    values = patch.model_dump(exclude_unset=True)
    for field, value in values.items():
        setattr(library, field, value)
    session.add(library)
    session.flush()
    if "cap" not in values and "half_life_days" not in values:
        return library, []
    state, faded_ops = fade(
        learnings(session, library), now=now_of(session), half_life_days=library.half_life_days
    )
    state, capped = enforce_cap(
        state, library.cap, why=f"; the cap was set to {library.cap} by {actor}"
    )
    pruned = [op.learning_id for op in [*faded_ops, *capped]]
    if pruned:
        save(session, library, experiment_id=None, learnings=state)
    return library, pruned


def save(
    session: Session,
    library: Library,
    *,
    experiment_id: int | None,
    learnings: Sequence[Learning],
) -> list[str]:
    """Write the learnings that are new or changed, item by item; return their ids.
    `experiment_id` is the experiment whose run wrote them (needed for new items only)."""
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
            "tags": list(item.tags),
        }
        row = rows.get(item.id)
        if row is None:
            if experiment_id is None:
                raise ValueError(f"a new learning ({item.id}) needs the experiment that wrote it")
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


@dataclass(frozen=True)
class CampaignArm:
    """An arm of one of the library's campaigns with its counts in the current epoch."""

    experiment: Experiment
    arm: Arm
    exposures: int
    successes: int


def campaign_arms(
    session: Session,
    library: Library,
    *,
    exclude_experiment_id: int | None = None,
    channel: str | None = None,
    segment: str | None = None,
) -> list[CampaignArm]:
    """Every arm of the library's experiments (of one channel, when given) that has
    exposures, with its counts summed by the database (in one segment, when given): three
    statements whatever the number of campaigns and hours."""
    experiments = {
        experiment.id: experiment
        for experiment in experiments_of(session, library)
        if experiment.id is not None
        and experiment.id != exclude_experiment_id
        and (channel is None or experiment.channel == channel)
    }
    metric_of = {
        experiment_id: success_metric(experiment.primary_metric, experiment.conversion_name)
        for experiment_id, experiment in experiments.items()
    }
    totals = repo.arm_totals(
        session,
        epochs={experiment_id: e.epoch for experiment_id, e in experiments.items()},
        metrics=[EXPOSURE, *metric_of.values()],
        segment=segment,
    )
    found: list[CampaignArm] = []
    for arm in repo.arms_of(session, experiment_ids=list(experiments)):
        assert arm.id is not None
        n = totals.get((arm.experiment_id, arm.id, EXPOSURE), 0)
        if n <= 0:
            continue
        s = totals.get((arm.experiment_id, arm.id, metric_of[arm.experiment_id]), 0)
        found.append(CampaignArm(experiments[arm.experiment_id], arm, n, min(s, n)))
    return found


def library_arms(
    session: Session,
    library: Library,
    *,
    exclude_experiment_id: int | None,
    min_exposures: int,
    min_successes: int,
    channel: str | None = None,
) -> list[LibraryArm]:
    """Arms of the library's other experiments (of `channel`, when given) with the minimum
    sample, most exposed first, with a weak-prior Beta posterior over their raw counts (as
    the loop's fallback figures; the prior is centred on each campaign's pooled rate)."""
    by_campaign: dict[int, list[CampaignArm]] = {}
    for item in campaign_arms(
        session, library, exclude_experiment_id=exclude_experiment_id, channel=channel
    ):
        by_campaign.setdefault(item.arm.experiment_id, []).append(item)
    found: list[LibraryArm] = []
    for items in by_campaign.values():
        n = np.array([item.exposures for item in items], dtype=np.float64)
        s = np.array([item.successes for item in items], dtype=np.float64)
        alpha, beta = pooled_prior(s, n, PRIOR_STRENGTH)
        posterior = beta_posterior(s, n, alpha, beta)
        low, high = posterior.credible_interval(0.95)
        for i, item in enumerate(items):
            if n[i] < min_exposures or s[i] < min_successes:
                continue
            assert item.arm.id is not None
            found.append(
                LibraryArm(
                    evidence=Evidence(
                        arm_id=item.arm.id,
                        exposures=int(n[i]),
                        successes=int(s[i]),
                        effect=float(posterior.mean[i]),
                        ci_low=float(low[i]),
                        ci_high=float(high[i]),
                        observed_rate=round(float(s[i] / n[i]), 6),
                        maturity=None,
                        experiment_key=item.experiment.key,
                    ),
                    content=item.arm.content,
                    tags=list(item.arm.tags or []),
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
    arms = campaign_arms(session, library, channel=channel, segment=segment)
    if not arms:
        return None
    return fit_campaign_tag_model(
        np.array([item.successes for item in arms]),
        np.array([item.exposures for item in arms]),
        [list(item.arm.tags or []) for item in arms],
        [item.experiment.key for item in arms],
        min_exposures=min_exposures,
    )
