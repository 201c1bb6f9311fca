"""The loop (scope review; admin allows it too): run now, read runs, review proposals,
read the learnings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query
from fastapi.responses import PlainTextResponse, Response

from service.core.deps import ReviewKey, RuntimeDep, SessionDep
from service.core.fields import IdPath
from service.loop import review
from service.loop.schemas import (
    ApproveIn,
    LearningList,
    LoopRunList,
    LoopRunOut,
    ProposalList,
    ProposalOut,
    RejectIn,
)

router = APIRouter(tags=["loop"])

MARKDOWN = "text/markdown; charset=utf-8"


@router.post(
    "/v1/experiments/{key}/loop-runs",
    status_code=201,
    response_model=LoopRunOut,
    responses={409: {"description": "Another replica is running this experiment's loop."}},
)
def run_loop(key: str, runtime: RuntimeDep, caller: ReviewKey) -> LoopRunOut:
    """Run the loop now. A run whose LLM pass failed is still recorded (status `failed`,
    with the error) and returned here."""
    return review.run_out(runtime.loop.run(key, trigger="api", actor=caller.name), key)


@router.get("/v1/experiments/{key}/loop-runs", response_model=LoopRunList)
def list_loop_runs(
    key: str,
    session: SessionDep,
    _caller: ReviewKey,
    limit: Annotated[int, Query(ge=1, le=review.MAX_RUNS)] = 50,
) -> LoopRunList:
    return LoopRunList(runs=review.list_runs(session, key, limit=limit))


@router.get("/v1/proposals", response_model=ProposalList)
def list_proposals(
    session: SessionDep,
    _caller: ReviewKey,
    status: Literal["pending", "approved", "rejected"] | None = None,
    experiment: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ProposalList:
    rows = review.list_proposals(session, status=status, experiment_key=experiment, limit=limit)
    return ProposalList(proposals=rows)


@router.post("/v1/proposals/{proposal_id}/approve", response_model=ProposalOut)
def approve_proposal(
    proposal_id: IdPath,
    session: SessionDep,
    caller: ReviewKey,
    body: Annotated[ApproveIn | None, Body()] = None,
) -> ProposalOut:
    proposal = review.approve(session, proposal_id, body or ApproveIn(), actor=caller.name)
    return review.proposal_out(proposal, _key(session, proposal.experiment_id))


@router.post("/v1/proposals/{proposal_id}/reject", response_model=ProposalOut)
def reject_proposal(
    proposal_id: IdPath, body: RejectIn, session: SessionDep, caller: ReviewKey
) -> ProposalOut:
    proposal = review.reject(session, proposal_id, body, actor=caller.name)
    return review.proposal_out(proposal, _key(session, proposal.experiment_id))


@router.get(
    "/v1/experiments/{key}/learnings",
    response_model=LearningList,
    responses={200: {"content": {"text/markdown": {}}}},
)
def read_learnings(
    key: str,
    session: SessionDep,
    _caller: ReviewKey,
    format: Literal["json", "markdown"] | None = None,
    accept: Annotated[str | None, Header()] = None,
) -> LearningList | Response:
    """The learnings as JSON, or as the Markdown learnings file with its evidence tables
    (`?format=markdown` or `Accept: text/markdown`)."""
    if format == "markdown" or (format is None and "text/markdown" in (accept or "")):
        return PlainTextResponse(review.learnings_markdown(session, key), media_type=MARKDOWN)
    library, learnings = review.list_learnings(session, key)
    return LearningList(experiment=key, library=library, learnings=learnings)


def _key(session: SessionDep, experiment_id: int) -> str:
    return review.experiment_key(session, experiment_id)
