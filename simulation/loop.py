"""`banditloop simulate --loop`: proof that the loop compounds.

A simulated audience clicks at a rate that depends on a variant's features through hidden
tag effects (`simulation.audience.tag_audience`: questions and personalisation help, urgency,
emoji and long lines hurt). Everything else is the real service on a temporary SQLite
database, driven on a simulated clock: decisions through the decider and the decision
log, clicks through the ingestion pipeline with their delays, snapshots through the
refresher, loop runs through the runner against the scripted copywriter served over HTTP
by the real openai SDK, and a simulated reviewer who approves what fits under the cap.

The same simulation runs twice from the same seed: with learnings, and with the loop's
memory switched off (no learnings and no tag effects in the prompt), and reports the true
click rate of the best live arm after each generation.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlmodel import Session

from service.core import migrations
from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.deciding.decider import Unit
from service.experiments import repository as experiments_repo
from service.experiments.arm_status import set_arm_status
from service.experiments.schemas import ArmIn, ExperimentCreate
from service.experiments.service import create_experiment
from service.libraries import service as library_domain
from service.loop import repository as loop_repo
from service.loop import review
from service.loop.schemas import ApproveIn, RejectIn
from service.measuring.adapters.base import NormalizedEvent
from service.measuring.service import ingest_payload
from service.policy import repository as snapshots_repo
from service.policy.snapshot import Snapshot
from simulation.audience import DelaySpec, TagAudience, tag_audience
from simulation.copywriter_server import running_copywriter
from variants.lifecycle import ArmStatus
from variants.rules import structural_tags

KEY = "loop-sim"
REVIEWER = "simulated reviewer"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CLICK_DELAY = DelaySpec(median_hours=2.0, sigma=1.8)
SHORT, LONG = 30, 50  # characters: the audience's hidden length buckets
LOSER_PROBABILITY_BEST = 0.05

# The incumbents: plain statements, one with urgency and an emoji, one long.
INITIAL_ARMS = (
    "Discover the new season edit",
    "Last chance: shop our spring collection ✨",
    "Inside: the looks our stylists love for the weekend",
    "Meet this week's best sellers",
)


@dataclass(frozen=True)
class SimulationConfig:
    generations: int = 8
    sends_per_generation: int = 8000
    refreshes_per_generation: int = 8
    max_live_arms: int = 6
    min_exposures: int = 300
    min_successes: int = 5
    seed: int = 7

    def __post_init__(self) -> None:
        if self.generations < 1:
            raise ValueError(f"generations must be at least 1, got {self.generations}")
        if self.sends_per_generation < self.refreshes_per_generation:
            raise ValueError(
                f"sends per generation must be at least {self.refreshes_per_generation}"
            )


@dataclass(frozen=True)
class Generation:
    index: int  # 0: the starting arms; g: after the g-th loop run and review
    best_live_rate: float  # true click rate of the best live arm
    served_rate: float  # true click rate of what was sent during the generation
    live_arms: int
    active_learnings: int


def true_tags(content: str) -> set[str]:
    """The features the simulated audience reacts to, read off the text (not the labels
    the loop gives arms): length buckets are hidden from the loop entirely."""
    tags = set(structural_tags(content))
    if "last chance" in content.casefold():
        tags.add("urgency")
    if len(content) <= SHORT:
        tags.add("length:short")
    elif len(content) >= LONG:
        tags.add("length:long")
    return tags


def visible_tags(content: str) -> list[str]:
    """The tags a marketer gives the starting arms: what the text shows, lengths aside."""
    return sorted(tag for tag in true_tags(content) if not tag.startswith("length:"))


def simulated_runtime(database: Path, *, base_url: str, seed: int, clock: ManualClock) -> Runtime:
    """The real service on a fresh SQLite file, on the simulated clock, talking to the
    scripted copywriter at `base_url`, with seeded decisions (the service draws from fresh
    entropy), so a seed reproduces a run. Not started."""
    settings = Settings(
        database_url=f"sqlite:///{database}",
        signing_keys=f"sim:{secrets.token_urlsafe(24)}",
        run_background=False,
        llm_base_url=base_url,
        llm_model="scripted-copywriter",
        llm_api_key="simulation",
        llm_timeout_seconds=10.0,
        llm_max_retries=0,
        _env_file=None,
    )
    migrations.upgrade(settings.database_url)
    return Runtime(settings, clock=clock, rng=np.random.default_rng([seed, 1]))


def simulate(
    config: SimulationConfig, *, use_learnings: bool, base_url: str, workdir: Path
) -> list[Generation]:
    audience = tag_audience()
    database = workdir / f"loop-{'with' if use_learnings else 'without'}-learnings.db"
    clock = ManualClock(START)
    runtime = simulated_runtime(database, base_url=base_url, seed=config.seed, clock=clock)
    rng = np.random.default_rng([config.seed, 2])
    try:
        runtime.start()
        _create(runtime, config)
        return list(_generations(runtime, config, audience, clock, rng, use_learnings))
    finally:
        runtime.stop()


def _create(runtime: Runtime, config: SimulationConfig) -> None:
    data = ExperimentCreate(
        key=KEY,
        name="Subject lines, simulated",
        arms=[
            ArmIn(content=text, tags=visible_tags(text), control=i == 0)
            for i, text in enumerate(INITIAL_ARMS)
        ],
        max_live_arms=config.max_live_arms,
        min_exposures=config.min_exposures,
        min_successes=config.min_successes,
        brief={"audience": "fashion shoppers", "goal": "clicks", "brand_voice": "friendly"},
        content_rules={"max_length": 80, "banned_phrases": ["guaranteed"]},
    )
    with runtime.unit_of_work() as session:
        create_experiment(session, data, actor=REVIEWER)


def _generations(
    runtime: Runtime,
    config: SimulationConfig,
    audience: TagAudience,
    clock: ManualClock,
    rng: np.random.Generator,
    use_learnings: bool,
) -> Iterator[Generation]:
    rates: dict[int, float] = {}
    pending: list[tuple[datetime, str]] = []  # click time, decision id
    counter = itertools.count()

    def rate_of(arm_id: int, content: str) -> float:
        if arm_id not in rates:
            rates[arm_id] = audience.rate(sorted(true_tags(content)))
        return rates[arm_id]

    yield _observe(runtime, 0, rate_of, served=float("nan"))
    step = 24.0 / config.refreshes_per_generation
    per_refresh = config.sends_per_generation // config.refreshes_per_generation
    for index in range(1, config.generations + 1):
        served: list[float] = []
        for _ in range(config.refreshes_per_generation):
            choices = runtime.decider.choose(KEY, [Unit()] * per_refresh)
            runtime.decision_log.flush()
            truth = np.array([rate_of(c.arm.id, c.arm.content) for c in choices])
            served.extend(truth)
            clicked = rng.random(len(choices)) < truth
            delays = CLICK_DELAY.from_uniform(rng.random(len(choices)))
            for choice, click, delay in zip(choices, clicked, delays, strict=True):
                if click and choice.decision_id is not None:  # a fallback is not tracked
                    pending.append(
                        (clock.now() + timedelta(hours=float(delay)), choice.decision_id)
                    )
            clock.advance(step)
            pending = _deliver(runtime, pending, clock.now(), counter)
            runtime.refresher.recompute_all()
            runtime.refresher.reload()
        runtime.loop.run(KEY, trigger="simulate", use_learnings=use_learnings)
        _review(runtime, config)
        runtime.refresher.reload()
        yield _observe(runtime, index, rate_of, served=float(np.mean(served)))


def _deliver(
    runtime: Runtime,
    pending: list[tuple[datetime, str]],
    now: datetime,
    counter: Iterator[int],
) -> list[tuple[datetime, str]]:
    due = [item for item in pending if item[0] <= now]
    if due:
        events = [
            NormalizedEvent(
                provider="api",
                event_key=f"sim-click-{next(counter)}",
                decision_ids=(decision_id,),
                type="click",
                provider_type="click",
                name=None,
                value=None,
                occurred_at=at,
                machine=False,
                dispatch_id=None,
                raw={},
            )
            for at, decision_id in due
        ]
        ingest_payload(runtime, source="simulation", headers={}, body=b"", events=events)
    return [item for item in pending if item[0] > now]


class ReviewLimits(Protocol):
    """What the simulated reviewer needs to know of a simulation's configuration."""

    @property
    def max_live_arms(self) -> int: ...

    @property
    def min_exposures(self) -> int: ...


def _review(runtime: Runtime, config: ReviewLimits, *, key: str = KEY) -> None:
    """The simulated reviewer: approves the loop's retirements, retires live arms that have
    almost no chance of being best, then approves new arms while there is room under the cap and
    turns the rest down (the reason reaches the next prompt)."""
    with runtime.unit_of_work() as session:
        experiment = experiments_repo.get_by_key(session, key=key)
        assert experiment is not None
        assert experiment.id is not None
        proposals = loop_repo.proposals(session, status="pending", experiment_id=experiment.id)
        for proposal in proposals:
            if proposal.kind == "retire_arm":
                assert proposal.id is not None
                review.approve(session, proposal.id, ApproveIn(), actor=REVIEWER)
        _retire_clear_losers(session, experiment.id, config)
        live = len(
            experiments_repo.arms(session, experiment_id=experiment.id, statuses=[ArmStatus.LIVE])
        )
        for proposal in proposals:
            if proposal.kind != "new_arm":
                continue
            assert proposal.id is not None
            if live < config.max_live_arms:
                review.approve(session, proposal.id, ApproveIn(), actor=REVIEWER)
                live += 1
            else:
                reason = "no room to test it: the live-arm cap is reached"
                review.reject(session, proposal.id, RejectIn(reason=reason), actor=REVIEWER)


def _retire_clear_losers(session: Session, experiment_id: int, config: ReviewLimits) -> None:
    """Humans may retire any arm: this one retires live arms with the minimum sample that
    have almost no chance of being best, to make room for new ideas."""
    row = snapshots_repo.latest(session, experiment_id=experiment_id)
    snapshot = Snapshot.from_json(row.payload) if row is not None else None
    overall = snapshot.overall if snapshot is not None else None
    if snapshot is None or overall is None:
        return
    for i, arm_id in enumerate(snapshot.arm_ids):
        if (
            overall.exposures[i] < config.min_exposures
            or overall.probability_best[i] >= LOSER_PROBABILITY_BEST
        ):
            continue
        arm = experiments_repo.get_arm(session, experiment_id=experiment_id, arm_id=arm_id)
        if arm is not None and arm.status == ArmStatus.LIVE:
            set_arm_status(
                session,
                arm,
                ArmStatus.RETIRED,
                reason=f"P(best) under {LOSER_PROBABILITY_BEST:.0%} after the minimum sample",
                actor=REVIEWER,
            )


def _observe(
    runtime: Runtime, index: int, rate_of: Callable[[int, str], float], *, served: float
) -> Generation:
    with runtime.unit_of_work() as session:
        experiment = experiments_repo.get_by_key(session, key=KEY)
        assert experiment is not None
        assert experiment.id is not None
        live = experiments_repo.arms(
            session, experiment_id=experiment.id, statuses=[ArmStatus.LIVE]
        )
        learnings = library_domain.learning_rows(
            session, library_domain.library_of(session, experiment)
        )
    return Generation(
        index=index,
        best_live_rate=max(rate_of(arm.id, arm.content) for arm in live if arm.id is not None),
        served_rate=served,
        live_arms=len(live),
        active_learnings=sum(1 for row in learnings if row.status == "active"),
    )


def compare(config: SimulationConfig, *, repeats: int = 1) -> dict[str, list[list[Generation]]]:
    """Both runs, with and without learnings, for `repeats` seeds (config.seed, +1, ...),
    against one scripted copywriter."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    results: dict[str, list[list[Generation]]] = {"with learnings": [], "without learnings": []}
    with tempfile.TemporaryDirectory(prefix="banditloop-sim-") as folder:
        with running_copywriter() as (base_url, _control):
            for repeat in range(repeats):
                seeded = dataclasses.replace(config, seed=config.seed + repeat)
                for label, use_learnings in (
                    ("with learnings", True),
                    ("without learnings", False),
                ):
                    workdir = Path(folder) / f"seed-{seeded.seed}"
                    workdir.mkdir(exist_ok=True)
                    results[label].append(
                        simulate(
                            seeded, use_learnings=use_learnings, base_url=base_url, workdir=workdir
                        )
                    )
    return results


def mean_best(runs: list[list[Generation]]) -> list[float]:
    """The best live arm's true rate per generation, averaged over the seeds."""
    return [float(np.mean([run[i].best_live_rate for run in runs])) for i in range(len(runs[0]))]


def table(results: dict[str, list[list[Generation]]]) -> str:
    with_l, without = results["with learnings"], results["without learnings"]
    a_mean, b_mean = mean_best(with_l), mean_best(without)
    lines = [
        f"true click rate of the best live arm after each generation, mean of {len(with_l)} "
        "seed(s); served: mean true rate of that generation's sends; learnings: active ones",
        f"{'gen':>3}  {'with learnings':>14}  {'served':>7}  {'learnings':>9}  "
        f"{'without':>8}  {'served':>7}  {'gain':>6}",
    ]
    for i in range(len(a_mean)):
        served_a = np.mean([run[i].served_rate for run in with_l])
        served_b = np.mean([run[i].served_rate for run in without])
        active = np.mean([run[i].active_learnings for run in with_l])
        lines.append(
            f"{i:>3}  {a_mean[i]:>14.3%}  {_pct(float(served_a)):>7}  {active:>9.1f}  "
            f"{b_mean[i]:>8.3%}  {_pct(float(served_b)):>7}  {a_mean[i] - b_mean[i]:>+6.2%}"
        )
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3%}"


def plot(results: dict[str, list[list[Generation]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for (label, runs), colour in zip(results.items(), ("tab:blue", "tab:orange"), strict=False):
        generations = [g.index for g in runs[0]]
        for run in runs if len(runs) > 1 else []:
            axis.plot(generations, [100 * g.best_live_rate for g in run], color=colour, alpha=0.2)
        axis.plot(
            generations,
            [100 * rate for rate in mean_best(runs)],
            color=colour,
            marker="o",
            label=f"{label} (mean of {len(runs)})" if len(runs) > 1 else label,
        )
    axis.set_xlabel("generation (one loop run and review per simulated day)")
    axis.set_ylabel("true click rate of the best live arm (%)")
    axis.set_title("banditloop simulate --loop")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


__all__ = [
    "Generation",
    "SimulationConfig",
    "compare",
    "mean_best",
    "plot",
    "simulate",
    "table",
    "true_tags",
]
