"""One loop run for one experiment: lease, gather, statistical pass, LLM pass, validate,
apply in one transaction, record.

Only the replica holding the `loop:<experiment id>` lease runs an experiment's loop; the
lease outlives the slowest LLM call with its retries and expires if the holder dies. The
LLM call happens outside any transaction (SQLite takes its write lock at BEGIN), between a
read-only gather and the one transaction that applies the plan and records the run.

When the LLM pass fails (timeout, 429 or 5xx after retries, refusal, truncated or
malformed reply) the run is recorded as failed with the error, and nothing the LLM said is
applied. The statistical pass's retirements still apply: they rest on the policy
snapshot's eligibility verdict, not on the LLM, and holding them back would only keep a
clear loser on traffic until the endpoint recovers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import openai
from sqlalchemy import Engine
from sqlmodel import Session

from bandits.tag_effects import TagEffect
from service.core import leases, metrics
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.errors import Conflict, NotFound
from service.core.notify import Notifier, loop_run_failed, proposals_waiting
from service.core.sessions import Handlers, unit_of_work
from service.core.settings import Settings
from service.experiments import repository as experiments_repo
from service.loop import repository as loop_repo
from service.loop.apply import apply_plan
from service.loop.gather import gather, input_digest
from service.models import LoopRun
from variants.inputs import LoopInput
from variants.llm import ProposerError, ProposerResult, embed_texts, propose
from variants.loop import LoopPlan, compute_tag_effects, plan_run
from variants.reply import LoopReply
from variants.segments import SegmentEffects, segment_tag_effects

log = logging.getLogger("banditloop.loop")

LEASE_PREFIX = "loop:"
MAX_ERROR = 2000


@dataclass
class LlmOutcome:
    """What the LLM pass produced: a reply, or the error that ended it (never both)."""

    requested: bool = False
    result: ProposerResult | None = None
    error: ProposerError | None = None
    embeddings: dict[str, list[float]] | None = None
    embedding_note: str | None = None

    @property
    def reply(self) -> LoopReply | None:
        return self.result.reply if self.result is not None else None


class LoopRunner:
    """Runs loop runs for this replica; owns the LLM client."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        notifier: Notifier,
        handlers: Callable[[], Handlers],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._notifier = notifier
        self._handlers = handlers
        self._clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()

    def _transaction(self) -> AbstractContextManager[Session]:
        return unit_of_work(self._engine, self._handlers(), clock=self._clock)

    # -- long-lived parts -------------------------------------------------------------

    def llm_client(self) -> openai.OpenAI | None:
        """The OpenAI-compatible client, created once on first use; None without an endpoint."""
        settings = self._settings
        if not settings.llm_configured:
            return None
        with self._client_lock:
            if self._client is None:
                self._client = openai.OpenAI(
                    base_url=settings.llm_base_url,
                    # Local servers (vLLM, Ollama, llama.cpp) accept any key; the SDK wants one.
                    api_key=settings.llm_api_key or "not-needed",
                    timeout=settings.llm_timeout_seconds,
                    max_retries=settings.llm_max_retries,
                )
            return self._client

    def close(self) -> None:
        """Close the LLM client (a later run opens a new one)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def lease_seconds(self) -> float:
        # Long enough for the structured call, its JSON-mode fallback and the embeddings
        # call, each with every retry; the lease still expires if this replica dies.
        settings = self._settings
        per_call = settings.llm_timeout_seconds * (settings.llm_max_retries + 1)
        return max(settings.lease_seconds, 3 * per_call + 60)

    # -- one run ----------------------------------------------------------------------

    def run(
        self,
        key: str,
        *,
        trigger: str = "api",
        actor: str | None = None,
        now: datetime | None = None,
        use_learnings: bool = True,
    ) -> LoopRun:
        """Run the loop for experiment `key` now; raises Conflict if another replica is.

        `now` is the run's clock (the simulator passes its simulated time);
        `use_learnings=False` runs the loop without memory: no learnings or tag effects in
        the prompt and none written (the simulator's baseline).
        """
        now = now or self._clock.now()
        with self._transaction() as session:
            experiment = experiments_repo.get_by_key(session, key=key)
            if experiment is None or experiment.id is None:
                raise NotFound(f"unknown experiment {key!r}", field="experiment")
            experiment_id = experiment.id
        lease = f"{LEASE_PREFIX}{experiment_id}"
        with self._transaction() as session:
            held = leases.try_acquire(
                session, name=lease, holder=self.holder, seconds=self.lease_seconds()
            )
        if not held:
            raise Conflict(
                f"another replica is running the loop of {key!r}; try again when it finishes",
                field="experiment",
            )
        try:
            run = self._run_held(experiment_id, key, trigger, actor, now, use_learnings)
        finally:
            try:
                with self._transaction() as session:
                    leases.release(session, name=lease, holder=self.holder)
            except Exception:  # the lease expires by itself
                log.warning("could not release the loop lease %s", lease, exc_info=True)
        self._notify(run, key)
        return run

    def _notify(self, run: LoopRun, key: str) -> None:
        """Tell the people (outgoing webhook) that the run failed or left proposals waiting.
        Only queues the message: never delays the run's answer."""
        notifier = self._notifier
        if not notifier.enabled or run.id is None:
            return
        if run.status == "failed":
            notifier.send(loop_run_failed(key, run_id=run.id, error=run.error))
        with self._transaction() as session:
            new = loop_repo.pending_count(session, experiment_id=run.experiment_id, run_id=run.id)
            pending = loop_repo.pending_count(session, experiment_id=run.experiment_id)
        if new:
            notifier.send(proposals_waiting(key, new=new, pending=pending, run_id=run.id))

    def _run_held(
        self,
        experiment_id: int,
        key: str,
        trigger: str,
        actor: str | None,
        now: datetime,
        use_learnings: bool,
    ) -> LoopRun:
        settings = self._settings
        with self._transaction() as session:
            loop_repo.abandon_running(session, experiment_id=experiment_id, finished_at=now)
            run = loop_repo.add_run(
                session,
                run=LoopRun(
                    experiment_id=experiment_id,
                    status="running",
                    trigger=trigger,
                    actor=actor,
                    started_at=now,
                    model=settings.llm_model or None,
                    requested_proposals=settings.llm_configured,
                ),
            )
            assert run.id is not None
            run_id = run.id
        try:
            return self._run_recorded(experiment_id, key, run_id, now, use_learnings)
        except Exception as exc:
            log.exception("loop run %s of %r failed", run_id, key)
            with self._transaction() as session:
                failed = loop_repo.get_run(session, run_id=run_id)
                assert failed is not None
                failed.status = "failed"
                failed.finished_at = now
                failed.error = f"internal error, nothing applied: {exc}"[:MAX_ERROR]
                failed.error_kind = "internal"
                failed.summary = "the run failed before applying anything"
                session.add(failed)
            return failed

    def _run_recorded(
        self, experiment_id: int, key: str, run_id: int, now: datetime, use_learnings: bool
    ) -> LoopRun:
        settings = self._settings
        with self._transaction() as session:
            experiment = experiments_repo.get(session, experiment_id=experiment_id)
            assert experiment is not None
            loop_input = gather(
                session,
                experiment,
                now=now,
                learnings_cap=settings.loop_learnings_cap,
                max_new_variants=settings.loop_max_new_variants,
                use_learnings=use_learnings,
            )
        # The statistical pass: tag effects by a regression with an arm-level random effect.
        tag_effects = compute_tag_effects(loop_input)
        # ... and within each named segment, to judge where the learnings hold.
        by_segment = segment_tag_effects(loop_input)
        llm = self._llm_pass(
            loop_input, tag_effects if use_learnings else [], by_segment if use_learnings else []
        )
        plan = plan_run(
            loop_input,
            tag_effects,
            llm.reply,
            now=now,
            llm_error=llm.error.kind.value if llm.error else None,
            embeddings=llm.embeddings,
            segment_effects=by_segment,
        )
        with self._transaction() as session:
            experiment = experiments_repo.get(session, experiment_id=experiment_id)
            assert experiment is not None
            done = apply_plan(
                session, experiment, plan, run_id=run_id, persist_learnings=use_learnings
            )
            run = loop_repo.get_run(session, run_id=run_id)
            assert run is not None
            _record(run, loop_input, tag_effects, plan, llm, done.ids(), now, by_segment)
            run.dropped = run.dropped + [item.model_dump() for item in done.skipped]
            if done.skipped:
                run.summary += f"; {len(done.skipped)} item(s) overtaken by changes since"
            session.add(run)
        _observe(run, llm)
        return run

    def _llm_pass(
        self,
        loop_input: LoopInput,
        tag_effects: Sequence[TagEffect],
        segment_effects: Sequence[SegmentEffects],
    ) -> LlmOutcome:
        client = self.llm_client()
        if client is None:
            return LlmOutcome()
        settings = self._settings
        try:
            result = propose(
                client,
                settings.llm_model,
                loop_input,
                tag_effects=tag_effects,
                segment_effects=segment_effects,
            )
        except ProposerError as error:
            return LlmOutcome(requested=True, error=error)
        outcome = LlmOutcome(requested=True, result=result)
        if settings.llm_embedding_model and result.reply.new_variants:
            texts = list(
                dict.fromkeys(
                    [arm.content for arm in loop_input.arms]
                    + [variant.content.strip() for variant in result.reply.new_variants]
                )
            )
            try:
                vectors = embed_texts(client, settings.llm_embedding_model, texts)
            except ProposerError as error:
                # Duplicates are still caught lexically; the reviewer sees why not semantically.
                outcome.embedding_note = f"embeddings failed, lexical check only: {error}"
            else:
                if vectors is None:
                    outcome.embedding_note = "the endpoint offers no embeddings: lexical only"
                else:
                    outcome.embeddings = dict(zip(texts, vectors, strict=True))
        return outcome


def _record(
    run: LoopRun,
    loop_input: LoopInput,
    tag_effects: Sequence[TagEffect],
    plan: LoopPlan,
    llm: LlmOutcome,
    ids: Mapping[str, Any],
    now: datetime,
    segment_effects: Sequence[SegmentEffects] = (),
) -> None:
    run.finished_at = now
    run.input_digest = input_digest(loop_input)
    run.requested_proposals = plan.requested_proposals or llm.requested
    run.summary = plan.summary
    run.applied = [item.model_dump() for item in plan.applied]
    run.dropped = [item.model_dump() for item in plan.dropped]
    output: dict[str, Any] = {
        "reply": None,
        "tag_effects": [_effect(effect) for effect in tag_effects],
        "segment_tag_effects": {
            item.segment: [_effect(effect) for effect in item.effects] for item in segment_effects
        },
        "candidate_learnings": [item.model_dump() for item in plan.candidate_learnings],
        **ids,
    }
    if llm.result is not None:
        result = llm.result
        output |= {
            "reply": result.reply.model_dump(mode="json"),
            "response_model": result.response_model,
            "used_fallback": result.used_fallback,
        }
        run.prompt_digest = result.prompt_digest
        run.prompt_tokens = result.usage.prompt_tokens
        run.completion_tokens = result.usage.completion_tokens
        run.latency_ms = result.latency_seconds * 1000
    if llm.embedding_note:
        output["embedding_note"] = llm.embedding_note
    if llm.error is not None:
        error = llm.error
        run.status = "failed"
        run.error = str(error)[:MAX_ERROR]
        run.error_kind = error.kind.value
        run.prompt_digest = error.prompt_digest or None
        run.prompt_tokens = error.usage.prompt_tokens
        run.completion_tokens = error.usage.completion_tokens
        run.latency_ms = error.latency_seconds * 1000
        output["used_fallback"] = error.used_fallback
    else:
        run.status = "succeeded"
    run.output = output


def _effect(effect: TagEffect) -> dict[str, Any]:
    # numpy scalars to plain numbers, for the JSON column
    return {
        name: value.item() if hasattr(value, "item") else value
        for name, value in dataclasses.asdict(effect).items()
    }


def _observe(run: LoopRun, llm: LlmOutcome) -> None:
    # Runs and pending proposals are counted from the database at scrape time
    # (service/admin/state_metrics.py), so the CLI's runs show too; the LLM's cost is per process.
    if not llm.requested or run.model is None:
        return
    if run.latency_ms is not None:
        metrics.LLM_LATENCY.labels(run.model).observe(run.latency_ms / 1000)
    if run.prompt_tokens:
        metrics.LLM_TOKENS.labels(run.model, "prompt").inc(run.prompt_tokens)
    if run.completion_tokens:
        metrics.LLM_TOKENS.labels(run.model, "completion").inc(run.completion_tokens)
