"""The loop's value and fatigue for one experiment (scope review)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.core.deps import ReviewKey, SessionDep
from service.libraries import view as view
from service.libraries.schemas import FatigueOut, LoopValueOut

router = APIRouter(tags=["experiments"])


@router.get("/v1/experiments/{key}/value", response_model=LoopValueOut)
def experiment_value(key: str, session: SessionDep, _caller: ReviewKey) -> LoopValueOut:
    """The served policy's lift over the holdout with its interval and the successes it
    gained; and the best live arm's estimated rate by loop generation."""
    return view.experiment_value(session, key)


@router.get("/v1/experiments/{key}/fatigue", response_model=FatigueOut)
def experiment_fatigue(
    key: str,
    session: SessionDep,
    _caller: ReviewKey,
    segment: Annotated[str | None, Query(max_length=128)] = None,
) -> FatigueOut:
    """Per live arm: whether its rate falls with repeat exposure of the same units or week
    over week (a trend, told apart from a sudden change), with the evidence."""
    return view.fatigue(session, key, segment=segment)
