"""The read side of learnings libraries, as the API answers it."""

from __future__ import annotations

from sqlmodel import Session

from service.core.sessions import now as now_of
from service.experiments.service import get_experiment
from service.libraries import repository as repo
from service.libraries import service as library_domain
from service.libraries.schemas import (
    CampaignTagEffectOut,
    FatigueOut,
    LibraryChangeOut,
    LibraryLearnings,
    LibraryOut,
    LibrarySettings,
    LibraryTagEffects,
    LoopValueOut,
)
from service.loop.review import learnings_out
from service.models import Library
from service.reporting import value as loop_value
from service.reporting.fatigue import experiment_fatigue
from variants.library import render_library_markdown


def _out(session: Session, library: Library) -> LibraryOut:
    assert library.id is not None
    active = sum(
        1 for row in repo.learnings(session, library_id=library.id) if row.status == "active"
    )
    return LibraryOut(
        name=library.name,
        description=library.description,
        cap=library.cap,
        half_life_days=library.half_life_days,
        experiments=[e.key for e in library_domain.experiments_of(session, library)],
        active_learnings=active,
        created_at=library.created_at,
    )


def update_library(
    session: Session, name: str, patch: LibrarySettings, *, actor: str
) -> LibraryChangeOut:
    library, pruned = library_domain.update_settings(session, name, patch, actor=actor)
    return LibraryChangeOut(**_out(session, library).model_dump(), pruned=pruned)


def list_libraries(session: Session) -> list[LibraryOut]:
    library_domain.resolve(session, None)  # the default library always exists
    return [_out(session, library) for library in repo.list_all(session)]


def library_out(session: Session, name: str) -> LibraryOut:
    return _out(session, library_domain.get_library(session, name))


def learnings(session: Session, name: str) -> LibraryLearnings:
    library = library_domain.get_library(session, name)
    items = library_domain.learnings(session, library)
    return LibraryLearnings(
        library=library.name,
        learnings=learnings_out(items, now=now_of(session), half_life_days=library.half_life_days),
    )


def learnings_markdown(session: Session, name: str) -> str:
    library = library_domain.get_library(session, name)
    return render_library_markdown(
        library.name,
        library_domain.learnings(session, library),
        now=now_of(session),
        half_life_days=library.half_life_days,
    )


def tag_effects(
    session: Session, name: str, *, segment: str | None, channel: str | None
) -> LibraryTagEffects:
    library = library_domain.get_library(session, name)
    model = library_domain.tag_model(session, library, segment=segment, channel=channel)
    if model is None:
        return LibraryTagEffects(
            library=library.name,
            segment=segment,
            campaigns_used=0,
            arms_used=0,
            between_campaign_variance=None,
            between_arm_variance=None,
            effects=[],
            note="not enough evidence: needs three arms with 500 exposures and a tag that varies",
        )
    return LibraryTagEffects(
        library=library.name,
        segment=segment,
        campaigns_used=model.campaigns_used,
        arms_used=model.arms_used,
        between_campaign_variance=model.sigma2,
        between_arm_variance=model.tau2,
        effects=[
            CampaignTagEffectOut(
                tag=e.tag,
                effect=e.effect,
                interval=[e.ci_low, e.ci_high],
                odds_ratio=e.odds_ratio,
                arms_with=e.arms_with,
                arms_without=e.arms_without,
                campaigns=e.campaigns,
                campaigns_agreeing=e.campaigns_agreeing,
            )
            for e in model.effects
        ],
    )


def library_value(session: Session, name: str) -> LoopValueOut:
    return LoopValueOut(
        **loop_value.library_value(session, library_domain.get_library(session, name))
    )


def fatigue(session: Session, key: str, *, segment: str | None) -> FatigueOut:
    experiment = get_experiment(session, key)
    return FatigueOut(
        experiment=experiment.key,
        segment=segment,
        arms=experiment_fatigue(session, experiment, segment=segment),
    )


def experiment_value(session: Session, key: str) -> LoopValueOut:
    return LoopValueOut(**loop_value.experiment_value(session, get_experiment(session, key)))
