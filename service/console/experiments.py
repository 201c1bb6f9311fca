"""Console pages for experiments: the list, create and edit, the experiment with its arms
and charts, arm status changes with a reason, and "run the loop now".

Each route parses its form, calls the same domain function as the API route, and renders
or redirects; a domain error is shown on the page it came from.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from service.console import forms, words
from service.console.auth import ReviewerDep, verify_form
from service.console.charts import line_chart
from service.console.forms import FormDep
from service.console.render import error_message, page
from service.core.deps import RuntimeDep, SessionDep
from service.core.errors import DomainError
from service.experiments import repository as repo
from service.experiments import service as domain
from service.experiments.schemas import ArmIn, ExperimentCreate, ExperimentSettings
from service.loop import repository as loop_repo
from service.loop import review
from service.policy import repository as snapshots_repo
from service.reporting import report as reporting
from variants.lifecycle import ArmStatus

router = APIRouter(prefix="/console")

# The defaults DESIGN.md gives an experiment, shown in the new form so nobody guesses.
NEW_DEFAULTS = {
    "primary_metric": "click",
    "attribution_window_hours": "168",
    "guardrail_unsubscribe": "0.25",
    "guardrail_complaint": "0.25",
    "exploration_share": "0.1",
    "min_exposures": "500",
    "min_successes": "5",
    "max_live_arms": "8",
    "max_length": "150",
}
VERBS = {"retire": ArmStatus.RETIRED, "suspend": ArmStatus.SUSPENDED, "restore": ArmStatus.LIVE}


def _see(url: str, notice: str | None = None) -> RedirectResponse:
    if notice:
        path, hash_, fragment = url.partition("#")
        url = path + ("&" if "?" in path else "?") + "notice=" + quote(notice) + hash_ + fragment
    return RedirectResponse(url, status_code=303)


@router.get("", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/console/experiments", status_code=303)


@router.get("/experiments", response_class=HTMLResponse, include_in_schema=False)
def experiments(request: Request, session: SessionDep, reviewer: ReviewerDep) -> Response:
    rows = []
    for experiment in repo.list_all(session, status=None):
        assert experiment.id is not None
        out = domain.experiment_out(session, experiment).model_dump(mode="json")
        arms = out.pop("arms")
        snapshot = snapshots_repo.latest(session, experiment_id=experiment.id)
        # The evaluation is left out here: the list needs the snapshot's figures only.
        report = reporting.build_report(
            experiment=out, arms=arms, snapshot=snapshot, evaluation=None
        )
        pending = loop_repo.proposals(
            session, status="pending", experiment_id=experiment.id, limit=1000
        )
        rows.append(
            {
                "experiment": out,
                "leader": words.leader_sentence(report),
                "maturity": words.maturity_words(report),
                "traffic": sum(r["exposures"] for r in report["arms"]),
                "pending": len(pending),
                "suspended": [a for a in arms if a["status"] == "suspended"],
                "live": sum(1 for a in arms if a["status"] == "live"),
            }
        )
    return page(request, "experiments.html", reviewer, rows=rows)


@router.get("/experiments/new", response_class=HTMLResponse, include_in_schema=False)
def new_experiment(request: Request, reviewer: ReviewerDep) -> Response:
    return page(request, "experiment_form.html", reviewer, experiment=None, values=NEW_DEFAULTS)


@router.post("/experiments/new", response_class=HTMLResponse, include_in_schema=False)
def create_experiment(
    request: Request, session: SessionDep, reviewer: ReviewerDep, form: FormDep
) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    values = dict(form)
    try:
        body = ExperimentCreate.model_validate(forms.experiment_create(values))
        experiment = domain.create_experiment(session, body, actor=reviewer.name)
    except (ValidationError, DomainError) as exc:
        session.rollback()
        return page(
            request,
            "experiment_form.html",
            reviewer,
            status_code=422,
            experiment=None,
            values=values,
            errors=forms.errors_of(exc),
        )
    return _see(f"/console/experiments/{experiment.key}", "Experiment created.")


@router.get("/experiments/{key}/edit", response_class=HTMLResponse, include_in_schema=False)
def edit_experiment(
    key: str, request: Request, session: SessionDep, reviewer: ReviewerDep
) -> Response:
    experiment = domain.experiment_out(session, domain.get_experiment(session, key))
    values = forms.values_of(experiment.model_dump(mode="json"))
    return page(request, "experiment_form.html", reviewer, experiment=experiment, values=values)


@router.post("/experiments/{key}/edit", response_class=HTMLResponse, include_in_schema=False)
def save_experiment(
    key: str, request: Request, session: SessionDep, reviewer: ReviewerDep, form: FormDep
) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    values = dict(form)
    experiment = domain.experiment_out(session, domain.get_experiment(session, key))
    try:
        patch = forms.experiment_settings(values)
        settings = ExperimentSettings.model_validate(patch)
        # The domain refuses a review session's change to what is measured (403).
        domain.update_settings(
            session, key, settings, actor=reviewer.name, may_change_measurement=reviewer.is_admin
        )
    except (ValidationError, DomainError) as exc:
        session.rollback()
        status = exc.status_code if isinstance(exc, DomainError) else 422
        return page(
            request,
            "experiment_form.html",
            reviewer,
            status_code=status,
            experiment=experiment,
            values=values,
            errors=forms.errors_of(exc),
        )
    return _see(f"/console/experiments/{key}", "Settings saved.")


def _experiment_context(session: Any, key: str) -> dict[str, Any]:
    report = reporting.report(session, key)
    history = reporting.history(session, key, limit=500)["points"]
    experiment = domain.get_experiment(session, key)
    assert experiment.id is not None
    arms = domain.experiment_out(session, experiment).arms
    rows = {r["arm_id"]: r for r in report["arms"]}
    pending = loop_repo.proposals(session, status="pending", experiment_id=experiment.id, limit=1)
    charts = [
        c
        for c in (
            line_chart(history, "allocation", "Traffic share over time"),
            line_chart(history, "posterior_mean", "Estimated rate over time", measured_only=True),
            line_chart(history, "observed_rate", "Observed rate over time", measured_only=True),
        )
        if c is not None
    ]
    history_by_arm = {
        a.id: repo.status_history(session, arm_id=a.id) for a in arms if a.status != "proposed"
    }
    return {
        "report": report,
        "exp": report["experiment"],
        "arms": [a for a in arms if a.status != "proposed"],
        "rows": rows,
        "leader": words.leader_sentence(report),
        "maturity": words.maturity_words(report),
        "charts": charts,
        "history_by_arm": history_by_arm,
        "has_pending": bool(pending),
        "changes": domain.change_history(session, key),
    }


@router.get("/experiments/{key}", response_class=HTMLResponse, include_in_schema=False)
def experiment_page(
    key: str, request: Request, session: SessionDep, reviewer: ReviewerDep
) -> Response:
    return page(request, "experiment.html", reviewer, **_experiment_context(session, key))


@router.post("/experiments/{key}/arms", response_class=HTMLResponse, include_in_schema=False)
def add_arm(
    key: str, request: Request, session: SessionDep, reviewer: ReviewerDep, form: FormDep
) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    try:
        arm_in = ArmIn.model_validate(
            {"content": form.get("content", ""), "tags": forms.split(form.get("tags"))}
        )
        arm = domain.add_arm(session, key, arm_in, actor=reviewer.name)
        out = domain.arm_out(arm, domain.get_experiment(session, key))
    except (ValidationError, DomainError) as exc:
        session.rollback()
        return _experiment_error(request, session, reviewer, key, exc, form_values=dict(form))
    notice = "Arm added and live."
    if out.warnings:
        notice += " Content warnings: " + "; ".join(w.message for w in out.warnings)
    return _see(f"/console/experiments/{key}#arm-{out.id}", notice)


@router.post(
    "/experiments/{key}/arms/{arm_id}/{verb}",
    response_class=HTMLResponse,
    include_in_schema=False,
)
def change_arm(
    key: str,
    arm_id: int,
    verb: str,
    request: Request,
    session: SessionDep,
    reviewer: ReviewerDep,
    form: FormDep,
) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    target = VERBS.get(verb)
    try:
        reason = form.get("reason", "").strip()
        if target is None:
            raise DomainError(f"unknown action {verb!r}", field="verb")
        if not reason:
            raise DomainError("say why: a reason is required", field="reason")
        domain.change_arm_status(session, key, arm_id, target, reason=reason, actor=reviewer.name)
    except DomainError as exc:
        session.rollback()
        return _experiment_error(request, session, reviewer, key, exc)
    return _see(f"/console/experiments/{key}#arm-{arm_id}", f"Arm {arm_id} {target.value}.")


def _experiment_error(
    request: Request,
    session: Any,
    reviewer: Any,
    key: str,
    exc: Exception,
    form_values: dict[str, Any] | None = None,
) -> Response:
    status = exc.status_code if isinstance(exc, DomainError) else 422
    message = "; ".join(forms.errors_of(exc).values()) or error_message(exc)
    return page(
        request,
        "experiment.html",
        reviewer,
        status_code=status,
        error=message,
        form_values=form_values or {},
        **_experiment_context(session, key),
    )


@router.post("/experiments/{key}/loop-runs", response_class=HTMLResponse, include_in_schema=False)
def run_loop(
    key: str, request: Request, runtime: RuntimeDep, reviewer: ReviewerDep, form: FormDep
) -> Response:
    verify_form(request, reviewer, form.get("csrf"))
    try:
        # The run takes seconds (the LLM); a sync route runs in a worker thread.
        run = runtime.loop.run(key, trigger="console", actor=reviewer.name)
    except DomainError as exc:
        return _see(f"/console/experiments/{key}/loop-runs", error_message(exc))
    out = review.run_out(run, key)
    notice = f"Loop run {out.id}: {out.status}" + (f" ({out.error})" if out.error else "")
    return _see(f"/console/experiments/{key}/loop-runs#run-{out.id}", notice)
