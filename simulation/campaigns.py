"""Successive campaigns to one audience, with the learnings library and without it.

Six (by default) monthly campaigns go to one simulated audience whose hidden tag effects
persist (`simulation.audience.tag_audience`). Each campaign is a new experiment with its
own human-written starting arms; its loop runs once at launch (the first LLM pass, before
any evidence of its own) and then daily, against the scripted copywriter over HTTP through
the real openai SDK, with a simulated reviewer approving what fits under the cap. Every
part is the service's own code on a temporary SQLite database and a simulated clock (as in
`simulation.loop`).

With the library, every campaign names the same library, so the next campaign's first pass
reads what the previous ones learnt (and may cite their arms). Without it, each campaign
names a library of its own: the loop learns within the campaign only. The figure per
campaign is the mean true click rate of what was sent, in its first week and overall.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from service.core.clock import ManualClock
from service.core.runtime import Runtime
from service.deciding.decider import Unit
from service.experiments import repository as experiments_repo
from service.experiments.schemas import ArmIn, ExperimentCreate
from service.experiments.service import create_experiment
from service.libraries import service as library_domain
from simulation.audience import TagAudience, tag_audience
from simulation.copywriter import BASES
from simulation.copywriter_server import running_copywriter
from simulation.loop import (
    CLICK_DELAY,
    REVIEWER,
    START,
    _deliver,
    _review,
    simulated_runtime,
    true_tags,
    visible_tags,
)

LIBRARY = "brand"
FIRST_WEEK_DAYS = 7
# A campaign's starting arms: statements (as a marketer writes them before any test), one
# with urgency and an emoji, one long; new texts every campaign.
STARTING_FORMS = (
    "Discover {base}",
    "Last chance: {base} ✨",
    "Inside this week: {base}, picked by our stylists for you",
    "Shop {base}",
)


@dataclass(frozen=True)
class CampaignConfig:
    campaigns: int = 6
    days: int = 10
    sends_per_day: int = 2000
    refreshes_per_day: int = 4
    max_live_arms: int = 6
    min_exposures: int = 300
    min_successes: int = 5
    seed: int = 11
    # The scripted copywriter's options (simulation.copywriter.write_reply): tentative
    # claims for tags that lean positive, and variants that combine two claimed tags.
    tentative: bool = True
    combine: bool = True

    def __post_init__(self) -> None:
        if self.campaigns < 1:
            raise ValueError(f"campaigns must be at least 1, got {self.campaigns}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if self.sends_per_day < self.refreshes_per_day or self.refreshes_per_day < 1:
            raise ValueError("need at least one send per refresh and one refresh a day")


@dataclass(frozen=True)
class Campaign:
    index: int  # 1, 2, ...
    first_week_rate: float  # mean true click rate of what was sent in the first week
    overall_rate: float  # ... over the whole campaign
    active_learnings_at_launch: int


def best_achievable(audience: TagAudience) -> float:
    """The best true rate the copywriter's tags can reach: a personalised question, of
    middling length, without urgency or emoji (short texts cannot carry both)."""
    return audience.rate(["question", "personalized"])


def starting_arms(campaign: int) -> list[ArmIn]:
    bases = [BASES[(4 * campaign + i) % len(BASES)] for i in range(len(STARTING_FORMS))]
    texts = [form.format(base=base) for form, base in zip(STARTING_FORMS, bases, strict=True)]
    return [
        ArmIn(content=text, tags=visible_tags(text), control=i == 0) for i, text in enumerate(texts)
    ]


def simulate_campaigns(
    config: CampaignConfig, *, use_library: bool, base_url: str, workdir: Path
) -> list[Campaign]:
    audience = tag_audience()
    database = workdir / f"campaigns-{'library' if use_library else 'solo'}.db"
    clock = ManualClock(START)
    runtime = simulated_runtime(database, base_url=base_url, seed=config.seed, clock=clock)
    rng = np.random.default_rng([config.seed, 2])
    try:
        runtime.start()
        return [
            _campaign(runtime, config, audience, clock, rng, index, use_library)
            for index in range(1, config.campaigns + 1)
        ]
    finally:
        runtime.stop()


def _campaign(
    runtime: Runtime,
    config: CampaignConfig,
    audience: TagAudience,
    clock: ManualClock,
    rng: np.random.Generator,
    index: int,
    use_library: bool,
) -> Campaign:
    key = f"campaign-{index}"
    # Campaigns are monthly: each starts on the first Monday-ish of its month.
    clock.set(START + timedelta(days=30 * (index - 1)))
    data = ExperimentCreate(
        key=key,
        name=f"Campaign {index}",
        arms=starting_arms(index),
        max_live_arms=config.max_live_arms,
        min_exposures=config.min_exposures,
        min_successes=config.min_successes,
        brief={"audience": "fashion shoppers", "goal": "clicks", "brand_voice": "friendly"},
        content_rules={"max_length": 80, "banned_phrases": ["guaranteed"]},
        library=LIBRARY if use_library else f"solo-{index}",
    )
    with runtime.unit_of_work() as session:
        create_experiment(session, data, actor=REVIEWER)
    learnings_at_launch = _active_learnings(runtime, key)
    # The first LLM pass, before any evidence of its own: it starts from the library.
    runtime.loop.run(key, trigger="simulate")
    _review(runtime, config, key=key)
    runtime.refresher.recompute_all()
    runtime.refresher.reload()

    rates: dict[int, float] = {}
    pending: list[tuple[datetime, str]] = []
    counter = itertools.count(index * 10_000_000)
    served_by_day: list[list[float]] = []
    step = 24.0 / config.refreshes_per_day
    per_refresh = config.sends_per_day // config.refreshes_per_day
    for _day in range(config.days):
        served: list[float] = []
        for _ in range(config.refreshes_per_day):
            choices = runtime.decider.choose(key, [Unit()] * per_refresh)
            runtime.decision_log.flush()
            truth = np.array([_rate(rates, audience, c.arm.id, c.arm.content) for c in choices])
            served.extend(truth)
            clicked = rng.random(len(choices)) < truth
            delays = CLICK_DELAY.from_uniform(rng.random(len(choices)))
            for choice, click, delay in zip(choices, clicked, delays, strict=True):
                if click and choice.decision_id is not None:
                    pending.append(
                        (clock.now() + timedelta(hours=float(delay)), choice.decision_id)
                    )
            clock.advance(step)
            pending = _deliver(runtime, pending, clock.now(), counter)
            runtime.refresher.recompute_all()
            runtime.refresher.reload()
        served_by_day.append(served)
        runtime.loop.run(key, trigger="simulate")
        _review(runtime, config, key=key)
        runtime.refresher.reload()
    # Late clicks still count toward the campaign's evidence for the next one.
    clock.advance(72.0)
    _deliver(runtime, pending, clock.now(), counter)
    runtime.refresher.recompute_all()
    first_week = [rate for day in served_by_day[:FIRST_WEEK_DAYS] for rate in day]
    everything = [rate for day in served_by_day for rate in day]
    return Campaign(
        index=index,
        first_week_rate=float(np.mean(first_week)),
        overall_rate=float(np.mean(everything)),
        active_learnings_at_launch=learnings_at_launch,
    )


def _rate(rates: dict[int, float], audience: TagAudience, arm_id: int, content: str) -> float:
    if arm_id not in rates:
        rates[arm_id] = audience.rate(sorted(true_tags(content)))
    return rates[arm_id]


def _active_learnings(runtime: Runtime, key: str) -> int:
    with runtime.unit_of_work() as session:
        experiment = experiments_repo.get_by_key(session, key=key)
        assert experiment is not None
        rows = library_domain.learning_rows(session, library_domain.library_of(session, experiment))
        return sum(1 for row in rows if row.status == "active")


def compare_campaigns(config: CampaignConfig, *, seeds: int = 3) -> dict[str, list[list[Campaign]]]:
    """Both arms of the comparison for `seeds` seeds (config.seed, +1, ...)."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    results: dict[str, list[list[Campaign]]] = {"library": [], "no library": []}
    with tempfile.TemporaryDirectory(prefix="banditloop-campaigns-") as folder:
        with running_copywriter() as (base_url, control):
            for repeat in range(seeds):
                seeded = dataclasses.replace(config, seed=config.seed + repeat)
                # Both arms of the comparison explore alike when they know nothing.
                control.exploration_seed = seeded.seed
                control.tentative, control.combine = config.tentative, config.combine
                workdir = Path(folder) / f"seed-{seeded.seed}"
                workdir.mkdir()
                for label, use_library in (("library", True), ("no library", False)):
                    results[label].append(
                        simulate_campaigns(
                            seeded, use_library=use_library, base_url=base_url, workdir=workdir
                        )
                    )
    return results


def _mean(runs: list[list[Campaign]], index: int, field: str) -> float:
    return float(np.mean([getattr(run[index], field) for run in runs]))


def campaign_table(results: dict[str, list[list[Campaign]]]) -> str:
    with_library, without = results["library"], results["no library"]
    best = best_achievable(tag_audience())
    lines = [
        f"mean true click rate of what was sent, mean of {len(with_library)} seed(s); "
        f"best achievable {best:.3%}",
        f"{'campaign':>8}  {'library wk1':>11}  {'no lib wk1':>10}  {'gain wk1':>8}  "
        f"{'library all':>11}  {'no lib all':>10}  {'learnings':>9}",
    ]
    for i in range(len(with_library[0])):
        a1, b1 = _mean(with_library, i, "first_week_rate"), _mean(without, i, "first_week_rate")
        a, b = _mean(with_library, i, "overall_rate"), _mean(without, i, "overall_rate")
        learnt = _mean(with_library, i, "active_learnings_at_launch")
        lines.append(
            f"{i + 1:>8}  {a1:>11.3%}  {b1:>10.3%}  {a1 - b1:>+8.3%}  {a:>11.3%}  {b:>10.3%}  "
            f"{learnt:>9.1f}"
        )
    wins = sum(
        all(run_a[i].first_week_rate > run_b[i].first_week_rate for i in range(1, len(run_a)))
        for run_a, run_b in zip(with_library, without, strict=True)
    )
    lines.append(
        f"seeds where the library's first week beat no library on every campaign after the "
        f"first: {wins} of {len(with_library)}"
    )
    for seed, (run_a, run_b) in enumerate(zip(with_library, without, strict=True)):
        gains = " ".join(
            f"{a.first_week_rate - b.first_week_rate:+.3%}"
            for a, b in zip(run_a, run_b, strict=True)
        )
        lines.append(f"seed {seed + 1}: first-week gain by campaign {gains}")
    return "\n".join(lines)


def iter_rows(results: dict[str, list[list[Campaign]]]) -> Iterator[tuple[str, int, Campaign]]:
    for label, runs in results.items():
        for run in runs:
            for campaign in run:
                yield label, campaign.index, campaign


__all__ = [
    "Campaign",
    "CampaignConfig",
    "best_achievable",
    "campaign_table",
    "compare_campaigns",
    "simulate_campaigns",
    "starting_arms",
]
