"""The policies a simulation can run: the service's own engine, and the textbook baselines.

``ServicePolicy`` is the service, not a model of it: each refresh builds ``PolicyInputs`` from
the simulated statistics and calls ``compute_snapshot`` (drift, decay, delay correction,
guardrails, segment priors, allocation, retirement streaks), applies guardrail breaches as the
refresher does (the arm is ``suspended`` from then on), loads the payload with ``load_policy``
and serves each decision with ``bandits.sample_arms`` from the segment ``/choose`` would pick.
A loop run every ``loop_every_hours`` retires the arms the snapshot has called eligible for a
day across two runs, as ``service.loop`` does with ``auto_retire`` (or an approving reviewer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bandits import sample_arms
from service.core.vocabulary import EXPOSURE, SERVED_ARM_STATUSES, ArmStatus
from service.loop.hold import held_arms
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import ArmInfo, ExperimentInfo
from service.policy.loaded import LoadedPolicy, load_policy
from service.policy.snapshot import Snapshot
from service.policy.suspension import arms_to_suspend
from simulation.audience import Scenario
from simulation.baselines import epsilon_greedy_allocation, thompson_allocation, uniform_allocation
from simulation.regret.store import SimulatedStatistics, at_hours

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EXPERIMENT_ID = 1
SEGMENT_ATTRIBUTE = "segment"
# service.loop: eligible for 24 hours, across two completed loop runs.


class Policy(Protocol):
    name: str

    def refresh(self, now_hours: float, added: Sequence[int], removed: Sequence[int]) -> None:
        """Recompute the allocation; ``added`` arms exist, ``removed`` ones the scenario retired."""

    def choose(
        self, segment: str, n: int, rng: np.random.Generator
    ) -> tuple[IntArray, FloatArray, str]:
        """n decisions for recipients of ``segment``: arm indices, propensities, logged segment."""

    def allocation(self) -> dict[int, float]:
        """The overall allocation now, by arm index."""


def experiment_info(scenario: Scenario, key: str = "sim") -> ExperimentInfo:
    """The experiment as created with every default (DESIGN.md, "Domain")."""
    return ExperimentInfo(
        id=EXPERIMENT_ID,
        key=key,
        status="running",
        epoch=1,
        success_metric=scenario.primary_metric,
        exposure_event="decision",
        attribution_window_hours=168.0,
        exploration_share=0.10,
        min_exposures=500,
        min_successes=5,
        segment_attribute=SEGMENT_ATTRIBUTE if len(scenario.segments) > 1 else None,
        half_life_hours=None,
        guardrails=(("unsubscribe", 0.25), ("complaint", 0.25)),
    )


def arm_id(index: int) -> int:
    return index + 1


@dataclass
class ArmEvent:
    hour: float
    exposures: int


class ServicePolicy:
    """The service's engine on the simulated statistics (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        store: SimulatedStatistics,
        *,
        seed: int,
        delay_correction: bool = True,
        loop_every_hours: float | None = 12.0,
        name: str = "ours",
    ) -> None:
        self.name = name
        self.scenario = scenario
        self.store = store
        self.seed = seed
        self.delay_correction = delay_correction
        self.loop_every_hours = loop_every_hours
        self.info = experiment_info(scenario)
        self.status: dict[int, str] = {}
        self.version = 0
        self.previous: Snapshot | None = None
        self.loaded: LoadedPolicy | None = None
        self.loop_runs: list[float] = []
        self.suspended: dict[int, ArmEvent] = {}
        self.retired: dict[int, ArmEvent] = {}

    def _exposures(self, index: int) -> int:
        return int(self.store.totals(EXPOSURE, [arm_id(index)])[0])

    def refresh(self, now_hours: float, added: Sequence[int], removed: Sequence[int]) -> None:
        for index in added:
            self.status.setdefault(index, ArmStatus.LIVE)
        for index in removed:
            self.status[index] = ArmStatus.RETIRED
        if self.loop_every_hours and now_hours > 0:
            due = int(now_hours // self.loop_every_hours)
            if due > len(self.loop_runs):
                self._loop_run(now_hours)
        arms = [
            ArmInfo(
                arm_id(i),
                self.scenario.arms[i].name,
                None,
                i == 0,
                self.status[i],
                self.scenario.arms[i].tags,
            )
            for i in sorted(self.status)
        ]
        inputs = PolicyInputs(
            self.info, arms, self.store.rows(), self.store.success_delays(), self.previous
        )
        self.version += 1
        # The refresher seeds each computation by (experiment, version); the seed stands in for
        # the experiment so that runs differ by seed and repeat exactly for one.
        rng = np.random.default_rng([self.seed, self.version])
        now = at_hours(now_hours)
        snapshot = compute_snapshot(
            inputs, now=now, rng=rng, delay_correction=self.delay_correction
        )
        # The refresher's rule: breaching live arms are suspended (this snapshot already
        # gives them nothing; the next refresh sees the status).
        for suspended_id in arms_to_suspend(snapshot, lambda a: self.status.get(a - 1)):
            index = suspended_id - 1
            self.status[index] = ArmStatus.SUSPENDED
            self.suspended[index] = ArmEvent(now_hours, self._exposures(index))
        self.previous = snapshot
        self.loaded = load_policy(EXPERIMENT_ID, self.version, snapshot)

    def _loop_run(self, now_hours: float) -> None:
        """The loop's statistical pass: retire what has been eligible for long enough."""
        verdicts = (self.previous.retirement if self.previous is not None else None) or {}
        served = {
            verdict_id: verdict
            for verdict_id, verdict in verdicts.items()
            if self.status.get(verdict_id - 1) in SERVED_ARM_STATUSES
        }
        held = held_arms(
            served,
            now=at_hours(now_hours),
            runs_since=lambda since: sum(1 for t in self.loop_runs if at_hours(t) >= since),
        )
        for retired_id in sorted(held):
            self.status[retired_id - 1] = ArmStatus.RETIRED
            self.retired[retired_id - 1] = ArmEvent(now_hours, self._exposures(retired_id - 1))
        self.loop_runs.append(now_hours)

    def choose(
        self, segment: str, n: int, rng: np.random.Generator
    ) -> tuple[IntArray, FloatArray, str]:
        loaded = self.loaded
        assert loaded is not None, "refresh before choosing"
        if not loaded.servable:
            # Fail open: the fallback arm, logged as nothing (no exposure, no propensity).
            fallback = loaded.fallback
            assert fallback is not None
            return np.full(n, fallback.id - 1), np.full(n, np.nan), ""
        context = {SEGMENT_ATTRIBUTE: segment} if loaded.segment_attribute else None
        logged_segment, policy = loaded.segment_for(context)
        picked, _explored = sample_arms(
            policy.exploit, policy.eligible, policy.exploration_share, n, rng
        )
        ids = np.array([arm.id for arm in loaded.arms], dtype=np.int64)
        return ids[picked] - 1, policy.allocation[picked], logged_segment

    def allocation(self) -> dict[int, float]:
        overall = self.previous.overall if self.previous is not None else None
        if self.previous is None or overall is None:
            return {}
        return {
            a - 1: float(x) for a, x in zip(self.previous.arm_ids, overall.allocation, strict=True)
        }


class BaselinePolicy:
    """Uniform, epsilon-greedy or Thompson sampling on the raw (uncorrected) counts.

    Textbook versions: one allocation for all segments, no guardrails, no retirement, a new
    arm starts from nothing. Served through the same sampler, so propensities are exact.
    ``thompson`` is pure; ``thompson-explore`` keeps an exploration share of ``epsilon``
    (the service's default 0.10) spread evenly, so it differs from the service only in what
    the service adds on top: delay correction, priors, guardrails, drift, retirement.
    """

    KINDS = ("uniform", "epsilon-greedy", "thompson", "thompson-explore")

    def __init__(
        self,
        kind: str,
        store: SimulatedStatistics,
        *,
        seed: int,
        epsilon: float = 0.10,
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind: must be one of {self.KINDS}, got {kind!r}")
        self.name = kind
        self.store = store
        self.epsilon = epsilon
        self._rng = np.random.default_rng([seed, 0x7EE])
        self._live: list[int] = []
        self._exploit = np.zeros(0)
        self._allocation = np.zeros(0)
        self._share = epsilon if kind == "thompson-explore" else 0.0

    def refresh(self, now_hours: float, added: Sequence[int], removed: Sequence[int]) -> None:
        gone = set(removed)
        self._live = [i for i in added if i not in gone]
        ids = [arm_id(i) for i in self._live]
        if self.name == "uniform":
            self._exploit = self._allocation = uniform_allocation(len(ids))
            return
        successes = self.store.totals(self.store.success_metric, ids)
        exposures = self.store.totals(EXPOSURE, ids)
        successes = np.minimum(successes, exposures)
        if self.name == "epsilon-greedy":
            self._exploit = epsilon_greedy_allocation(successes, exposures, self.epsilon)
        else:
            self._exploit = thompson_allocation(successes, exposures, self._rng)
        # What sample_arms serves: the exploration share evenly, the rest by the exploit part.
        k = len(ids)
        self._allocation = (1.0 - self._share) * self._exploit + self._share / k

    def choose(
        self, segment: str, n: int, rng: np.random.Generator
    ) -> tuple[IntArray, FloatArray, str]:
        eligible = np.ones(len(self._live), dtype=bool)
        picked, _ = sample_arms(self._exploit, eligible, self._share, n, rng)
        return np.asarray(self._live, dtype=np.int64)[picked], self._allocation[picked], ""

    def allocation(self) -> dict[int, float]:
        return {i: float(x) for i, x in zip(self._live, self._allocation, strict=True)}
