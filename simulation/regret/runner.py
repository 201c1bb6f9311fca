"""Run one policy through one pinned scenario on a simulated clock.

Every ``refresh_hours`` of simulated time: the events that have happened by then reach the
statistics, the policy refreshes, and the step's sends are decided from that allocation, spread
evenly over the step. The audience comes from ``simulation.audience`` with common random numbers,
so every policy faces the same recipients for the same seed.

Regret is the expected (pseudo-)regret: per decision, the best true rate among the arms live
for that recipient's segment minus the chosen arm's true rate. The best is taken among
*acceptable* arms (unsubscribes within the guardrail's tolerance of the lowest), and a send to
an unacceptable arm (the guardrail trap) earns no credit: its regret is the whole best rate.
Its clicks are not a prize to chase; what it costs in unsubscribes is reported separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.core.vocabulary import OVERALL
from simulation.audience import Scenario, draw_outcomes, draw_segments, simulation_streams
from simulation.regret.policies import (
    BaselinePolicy,
    Policy,
    ServicePolicy,
    arm_id,
    experiment_info,
)
from simulation.regret.store import SimulatedStatistics

FloatArray = npt.NDArray[np.float64]

POLICIES = ("uniform", "epsilon-greedy", "thompson", "thompson-explore", "ours", "ours-naive")
DEFAULT_POLICIES = ("uniform", "epsilon-greedy", "thompson", "ours")
GUARDRAIL_TOLERANCE = 0.25


@dataclass(frozen=True)
class SimulationSettings:
    """How a run is driven. ``hours`` defaults to the scenario's horizon."""

    refresh_hours: float = 1.0
    hours: float | None = None
    loop_every_hours: float | None = 12.0
    epsilon: float = 0.10

    def __post_init__(self) -> None:
        if not (math.isfinite(self.refresh_hours) and self.refresh_hours > 0):
            raise ValueError(f"refresh_hours: must be > 0, got {self.refresh_hours!r}")
        if self.hours is not None and not self.hours > 0:
            raise ValueError(f"hours: must be > 0, got {self.hours!r}")
        if self.loop_every_hours is not None and not self.loop_every_hours > 0:
            raise ValueError(f"loop_every_hours: must be > 0, got {self.loop_every_hours!r}")


@dataclass
class RunResult:
    """One (scenario, policy, seed) run; arrays have one row per refresh step."""

    scenario: str
    policy: str
    seed: int
    arm_names: tuple[str, ...]
    hours: FloatArray  # step start times
    cumulative_regret: FloatArray  # after each step
    allocation: FloatArray  # (steps, arms): the overall allocation served in the step
    decisions: FloatArray  # (steps, arms): decisions per arm in the step
    successes: int  # primary-metric successes the decisions earned inside the window
    unsubscribes: int
    best_share: float  # decisions to the best acceptable arm for the recipient's segment
    trap_decisions: int  # decisions to arms whose unsubscribes breach the tolerance
    suspended: dict[str, tuple[float, int]] = field(default_factory=dict)  # hour, exposures
    retired: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def regret(self) -> float:
        return float(self.cumulative_regret[-1]) if self.cumulative_regret.size else 0.0

    @property
    def n(self) -> int:
        return int(self.decisions.sum())


def acceptable_arms(scenario: Scenario) -> tuple[bool, ...]:
    """Arms whose unsubscribe rate is within the guardrail tolerance of the lowest."""
    lowest = min(arm.rate_unsub for arm in scenario.arms)
    return tuple(arm.rate_unsub <= lowest * (1 + GUARDRAIL_TOLERANCE) for arm in scenario.arms)


def make_policy(
    name: str,
    scenario: Scenario,
    store: SimulatedStatistics,
    seed: int,
    settings: SimulationSettings,
) -> Policy:
    if name in BaselinePolicy.KINDS:
        return BaselinePolicy(name, store, seed=seed, epsilon=settings.epsilon)
    if name in ("ours", "ours-naive"):
        return ServicePolicy(
            scenario,
            store,
            seed=seed,
            delay_correction=name == "ours",
            loop_every_hours=settings.loop_every_hours,
            name=name,
        )
    raise ValueError(f"policy: must be one of {POLICIES}, got {name!r}")


def run(
    scenario: Scenario, policy_name: str, seed: int, settings: SimulationSettings | None = None
) -> RunResult:
    """Simulate one policy on one scenario; deterministic for (scenario, policy, seed)."""
    settings = settings or SimulationSettings()
    info = experiment_info(scenario)
    segment_names = tuple(scenario.segments)
    logged_segments = (OVERALL, *segment_names) if info.segment_attribute else (OVERALL,)
    store = SimulatedStatistics(
        experiment_id=info.id,
        epoch=info.epoch,
        segments=logged_segments,
        success_metric=info.success_metric,
        event_types=(scenario.primary_metric, "unsubscribe"),
        attribution_window_hours=info.attribution_window_hours,
    )
    policy = make_policy(policy_name, scenario, store, seed, settings)
    streams = simulation_streams(seed, scenario)
    acceptable = np.array(acceptable_arms(scenario))
    horizon = settings.hours if settings.hours is not None else scenario.horizon_hours
    dt = settings.refresh_hours
    steps = max(1, math.ceil(horizon / dt - 1e-9))
    per_step = max(1, round(scenario.sends_per_hour * dt))
    n_arms = len(scenario.arms)
    window = info.attribution_window_hours

    hours = np.arange(steps, dtype=np.float64) * dt
    cumulative = np.zeros(steps)
    allocation = np.zeros((steps, n_arms))
    decisions = np.zeros((steps, n_arms))
    regret = successes = unsubscribes = best = trap = 0.0
    for step, t0 in enumerate(hours.tolist()):
        store.advance(t0)
        added = [i for i, arm in enumerate(scenario.arms) if arm.added_at_hours <= t0]
        live = scenario.live_arms(t0)
        removed = [i for i in added if i not in live]
        policy.refresh(t0, added, removed)
        for index, share in policy.allocation().items():
            allocation[step, index] = share

        sent = t0 + (np.arange(per_step) + 0.5) * (dt / per_step)
        segments = draw_segments(scenario, per_step, streams.segments)
        for segment in segment_names:
            mine = np.flatnonzero(segments == segment)
            if mine.size == 0:
                continue
            arms, propensity, logged = policy.choose(segment, mine.size, streams.policy)
            rates = np.array([arm.rate(segment, t0) for arm in scenario.arms])
            candidates = [i for i in live if acceptable[i]] or list(live)
            best_index = max(candidates, key=lambda i: rates[i])
            credit = np.where(acceptable[arms], rates[arms], 0.0)
            regret += float(np.sum(rates[best_index] - credit))
            best += float(np.sum(arms == best_index))
            trap += float(np.sum(~acceptable[arms]))
            np.add.at(decisions[step], arms, 1.0)
            logged_index = logged_segments.index(logged)
            stored = np.isfinite(propensity)  # fallback decisions are not stored
            for index in np.unique(arms).tolist():
                chosen = mine[arms == index]
                outcome = draw_outcomes(
                    scenario, index, segment, t0, chosen.size, streams.arms[index]
                )
                when = sent[chosen]
                keep = stored[arms == index]
                seg = np.full(chosen.size, logged_index, dtype=np.int64)
                ids = np.full(chosen.size, arm_id(index), dtype=np.int64)
                clicked = outcome.click & (outcome.click_delay_hours <= window)
                unsub = outcome.unsub & (outcome.unsub_delay_hours <= window)
                successes += float(clicked.sum())
                unsubscribes += float(unsub.sum())
                store.expose(sent=when[keep], arm=ids[keep], segment=seg[keep])
                store.schedule(
                    event_type=scenario.primary_metric,
                    sent=when[keep & outcome.click],
                    delay=outcome.click_delay_hours[keep & outcome.click],
                    arm=ids[keep & outcome.click],
                    segment=seg[keep & outcome.click],
                )
                store.schedule(
                    event_type="unsubscribe",
                    sent=when[keep & outcome.unsub],
                    delay=outcome.unsub_delay_hours[keep & outcome.unsub],
                    arm=ids[keep & outcome.unsub],
                    segment=seg[keep & outcome.unsub],
                )
        cumulative[step] = regret

    names = scenario.arm_names
    total = decisions.sum()
    result = RunResult(
        scenario=scenario.name,
        policy=policy_name,
        seed=seed,
        arm_names=names,
        hours=hours,
        cumulative_regret=cumulative,
        allocation=allocation,
        decisions=decisions,
        successes=int(successes),
        unsubscribes=int(unsubscribes),
        best_share=best / total if total else 0.0,
        trap_decisions=int(trap),
    )
    if isinstance(policy, ServicePolicy):
        result.suspended = {names[i]: (e.hour, e.exposures) for i, e in policy.suspended.items()}
        result.retired = {names[i]: (e.hour, e.exposures) for i, e in policy.retired.items()}
    return result
