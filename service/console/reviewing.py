"""Console pages for the loop: the review queue (one proposal at a time, keyboard driven,
the next one swapped in without a full reload), the learnings with their history and a
Markdown download, and the loop runs.

Approve and reject call `service.loop.review`, the functions behind the API's
`/v1/proposals/{id}/approve|reject`: the edit is re-validated there, not here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from service.console.auth import Reviewer, ReviewerDep, verify_form
from service.console.forms import FormDep
from service.console.render import error_message, page
from service.core.deps import SessionDep
from service.core.errors import DomainError, InvalidInput
from service.experiments import repository as experiments_repo
from service.experiments.service import get_experiment
from service.libraries import service as library_domain
from service.loop import repository as loop_repo
from service.loop import review
from service.loop.schemas import ApproveIn, RejectIn
from service.models import Proposal
from variants.similarity import lexical_similarity

router = APIRouter(prefix="/console")

# Sent by console.js: answer with the queue's fragment instead of a whole page.
FRAGMENT_HEADER = "x-console-fragment"
QUEUE_LIMIT = 1000


def _queue(session: Session, experiment_key: str | None) -> list[Proposal]:
    experiment_id = get_experiment(session, experiment_key).id if experiment_key else None
    return loop_repo.proposals(
        session, status="pending", experiment_id=experiment_id, limit=QUEUE_LIMIT
    )


def _closest(session: Session, proposal: Proposal) -> dict[str, Any] | None:
    """The most similar other arm of the experiment (live, retired or rejected)."""
    text = proposal.edited_content or proposal.content or ""
    best: tuple[float, Any] | None = None
    for arm in experiments_repo.arms(session, experiment_id=proposal.experiment_id):
        if arm.id == proposal.arm_id or arm.status == "proposed":
            continue
        score = lexical_similarity(text, arm.content)
        if best is None or score > best[0]:
            best = (score, arm)
    if best is None:
        return None
    return {"arm": best[1], "similarity": best[0]}


def _learning_claim(session: Session, proposal: Proposal) -> str | None:
    key = proposal.tests_learning
    if not key:
        return None
    experiment = experiments_repo.get(session, experiment_id=proposal.experiment_id)
    if experiment is None:
        return key
    for row in library_domain.learning_rows(
        session, library_domain.library_of(session, experiment)
    ):
        if row.key == key:
            return f"{row.key}: {row.claim}"
    return key


def _card_context(
    session: Session, experiment_key: str | None, after: int | None = None
) -> dict[str, Any]:
    queue = _queue(session, experiment_key)
    later = [p for p in queue if after is None or (p.id or 0) > after]
    current = later[0] if later else (queue[0] if queue else None)
    context: dict[str, Any] = {
        "proposal": None,
        "remaining": len(queue),
        "experiment_key": experiment_key,
    }
    if current is not None:
        key = review.experiment_key(session, current.experiment_id)
        target = None
        if current.kind == "retire_arm" and current.arm_id is not None:
            target = experiments_repo.get_arm(
                session, experiment_id=current.experiment_id, arm_id=current.arm_id
            )
        context.update(
            proposal=review.proposal_out(current, key),
            position=queue.index(current) + 1,
            closest=_closest(session, current) if current.kind == "new_arm" else None,
            claim=_learning_claim(session, current),
            target=target,
        )
    return context


def _queue_response(
    request: Request,
    session: Session,
    reviewer: Reviewer,
    experiment_key: str | None,
    *,
    after: int | None = None,
    notice: str | None = None,
    error: str | None = None,
    draft: dict[str, str] | None = None,
    status_code: int = 200,
    keep: int | None = None,
) -> Response:
    context = _card_context(session, experiment_key, after=after)
    if keep is not None and context["proposal"] is not None and context["proposal"].id != keep:
        # An error keeps the reviewer on the proposal they were working on.
        context = _card_context(session, experiment_key, after=keep - 1)
    context.update(notice=notice, error=error, draft=draft or {})
    fragment = request.headers.get(FRAGMENT_HEADER) == "1"
    name = "_queue.html" if fragment else "review.html"
    return page(request, name, reviewer, status_code=status_code, **context)


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def review_queue(
    request: Request,
    session: SessionDep,
    reviewer: ReviewerDep,
    experiment: str | None = None,
    after: int | None = None,
) -> Response:
    return _queue_response(
        request,
        session,
        reviewer,
        experiment or None,
        after=after,
        notice=request.query_params.get("notice"),
    )


@router.post(
    "/proposals/{proposal_id}/{action}", response_class=HTMLResponse, include_in_schema=False
)
def decide(
    proposal_id: int,
    action: str,
    request: Request,
    session: SessionDep,
    reviewer: ReviewerDep,
    form: FormDep,
) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    experiment_key = form.get("experiment") or None
    try:
        if action == "approve":
            content = form.get("content")
            body = ApproveIn.model_validate({"content": content} if content else {})
            review.approve(session, proposal_id, body, actor=reviewer.name)
            edited = (
                body.content is not None
                and body.content.strip() != (form.get("original") or "").strip()
            )
            notice = f"Approved proposal {proposal_id}" + (" with your edit" if edited else "")
            notice += ": it is live."
        elif action == "reject":
            reason = form.get("reason", "").strip()
            if not reason:
                raise InvalidInput(
                    "say why: the reason is fed to the next loop run", field="reason"
                )
            review.reject(session, proposal_id, RejectIn(reason=reason), actor=reviewer.name)
            notice = f"Rejected proposal {proposal_id}; the reason goes to the next run."
        else:
            raise InvalidInput(f"unknown action {action!r}", field="action")
    except (ValidationError, DomainError) as exc:
        session.rollback()
        status = exc.status_code if isinstance(exc, DomainError) else 422
        message = error_message(exc)
        if isinstance(exc, ValidationError):
            message = "; ".join(e["msg"] for e in exc.errors())
        if not request.headers.get(FRAGMENT_HEADER):
            status = 200 if status < 500 else status  # a whole page shows the error inline
        return _queue_response(
            request,
            session,
            reviewer,
            experiment_key,
            error=message,
            draft={"action": action, **form},
            status_code=status,
            keep=proposal_id,
        )
    if request.headers.get(FRAGMENT_HEADER) == "1":
        return _queue_response(
            request, session, reviewer, experiment_key, after=proposal_id, notice=notice
        )
    url = f"/console/review?after={proposal_id}&notice={quote(notice)}"
    if experiment_key:
        url += f"&experiment={quote(experiment_key)}"
    return RedirectResponse(url, status_code=303)


@router.get("/experiments/{key}/learnings", response_class=HTMLResponse, include_in_schema=False)
def learnings(key: str, request: Request, session: SessionDep, reviewer: ReviewerDep) -> Response:
    library, items = review.list_learnings(session, key)
    runs = review.list_runs(session, key, limit=review.MAX_RUNS)
    changes = [
        {"run": run, "item": item}
        for run in runs
        for item in run.applied
        if item.get("kind") == "learning_op"
    ]
    return page(
        request,
        "learnings.html",
        reviewer,
        key=key,
        library=library,
        active=[i for i in items if i.status == "active"],
        past=[i for i in items if i.status != "active"],
        changes=changes,
    )


@router.get("/experiments/{key}/learnings.md", include_in_schema=False)
def learnings_download(key: str, session: SessionDep, _reviewer: ReviewerDep) -> Response:
    text = review.learnings_markdown(session, key)
    return PlainTextResponse(
        text,
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{key}-learnings.md"'},
    )


@router.get("/experiments/{key}/loop-runs", response_class=HTMLResponse, include_in_schema=False)
def loop_runs(key: str, request: Request, session: SessionDep, reviewer: ReviewerDep) -> Response:
    runs = review.list_runs(session, key, limit=50)
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    pending = loop_repo.pending_count(session, experiment_id=experiment.id)
    return page(request, "loop_runs.html", reviewer, key=key, runs=runs, pending=pending)
