"""A simulated email audience for the simulator and the regret benchmark.

Scenarios are pinned, with rates and delays typical of email: clicks at 1-5%
per send, conversions at 0.3-1.5%, unsubscribes at 0.1-0.3% (a trap arm at
2-3x that), clicks arriving from minutes to days after the send. The
simulator's runner serves arms through the real engine on a simulated clock
and asks this module what each recipient does.

Common random numbers. A recipient's potential outcomes are fixed by four
uniforms drawn from the stream of the arm that serves it: the j-th recipient
served arm a sees the same uniforms whichever policy served it and whenever
it was served, and a click happens when its uniform falls below the arm's
rate then (so a rate change moves outcomes monotonically). Draws are split
invariant: drawing 3 then 2 outcomes from a stream gives the same five as
drawing 5. Get the streams with ``simulation_streams(seed, scenario)``, one
fresh set per (seed, policy) run, so every policy faces the same audience.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from scipy.special import erf, expit, logit, ndtri

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Typical figures for an email list, used by the pinned scenarios.
_UNSUB_RATE = 0.0025
_CLICK_DELAY_MEDIAN_HOURS = 2.0
_CLICK_DELAY_SIGMA = 1.8  # p10 12 minutes, p90 20 hours, p99 5.5 days
_UNSUB_DELAY_MEDIAN_HOURS = 4.0
_UNSUB_DELAY_SIGMA = 1.5


def _check_rate(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 < value < 1.0):
        raise ValueError(f"{name}: must be a rate in (0, 1), got {value!r}")


def _frozen_rates(name: str, rates: Mapping[str, float] | None) -> Mapping[str, float] | None:
    if rates is None:
        return None
    for segment, rate in rates.items():
        _check_rate(f"{name}[{segment!r}]", rate)
    return MappingProxyType(dict(rates))


@dataclass(frozen=True)
class DelaySpec:
    """Log-normal delay from the send to the event, in hours.

    ``median_hours`` is the median delay; ``sigma`` the standard deviation of
    the log delay (1.8 puts the 10th percentile at a tenth of the median and
    the 90th at ten times it).
    """

    median_hours: float
    sigma: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median_hours) and self.median_hours > 0.0):
            raise ValueError(f"median_hours: must be > 0, got {self.median_hours!r}")
        if not (math.isfinite(self.sigma) and self.sigma > 0.0):
            raise ValueError(f"sigma: must be > 0, got {self.sigma!r}")

    def from_uniform(self, uniform: FloatArray) -> FloatArray:
        """Delays by inverse transform of uniforms in [0, 1)."""
        return np.asarray(self.median_hours * np.exp(self.sigma * ndtri(uniform)), dtype=np.float64)

    def cdf(self, hours: npt.ArrayLike) -> FloatArray:
        """P(delay <= hours): the share of eventual events seen by then."""
        h = np.asarray(hours, dtype=np.float64)
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(h, 0.0)) - math.log(self.median_hours)) / self.sigma
        return np.asarray(0.5 * (1.0 + erf(z / math.sqrt(2.0))), dtype=np.float64)

    def quantile(self, probability: float) -> float:
        """The delay below which ``probability`` of events arrive."""
        if not 0.0 < probability < 1.0:
            raise ValueError(f"probability: must be in (0, 1), got {probability!r}")
        return float(self.median_hours * math.exp(self.sigma * float(ndtri(probability))))


@dataclass(frozen=True)
class RateChange:
    """From ``at_hours`` on, the arm's success rate (and per-segment rates) become these."""

    at_hours: float
    rate_click: float
    segment_rates: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        _check_rate("rate_click", self.rate_click)
        object.__setattr__(
            self, "segment_rates", _frozen_rates("segment_rates", self.segment_rates)
        )


@dataclass(frozen=True)
class ArmSpec:
    """One arm as the audience sees it.

    ``rate_click`` is the per-send rate of the primary metric (a click, or a
    conversion in a scenario whose ``primary_metric`` is ``conversion``);
    ``segment_rates`` overrides it per segment. ``rate_changes`` are step
    changes in time. The arm is live from ``added_at_hours`` until
    ``removed_at_hours`` (when the scenario retires it; outcomes stay defined
    after that so a decision served just before still resolves).
    """

    name: str
    rate_click: float
    rate_unsub: float = _UNSUB_RATE
    tags: tuple[str, ...] = ()
    added_at_hours: float = 0.0
    removed_at_hours: float | None = None
    segment_rates: Mapping[str, float] | None = None
    rate_changes: tuple[RateChange, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        _check_rate("rate_click", self.rate_click)
        _check_rate("rate_unsub", self.rate_unsub)
        if self.added_at_hours < 0.0:
            raise ValueError(f"added_at_hours: must be >= 0, got {self.added_at_hours!r}")
        if self.removed_at_hours is not None and self.removed_at_hours <= self.added_at_hours:
            raise ValueError("removed_at_hours: must be after added_at_hours")
        object.__setattr__(
            self, "segment_rates", _frozen_rates("segment_rates", self.segment_rates)
        )
        object.__setattr__(self, "tags", tuple(self.tags))
        changes = tuple(sorted(self.rate_changes, key=lambda change: change.at_hours))
        object.__setattr__(self, "rate_changes", changes)

    def is_live(self, t_hours: float) -> bool:
        return self.added_at_hours <= t_hours and (
            self.removed_at_hours is None or t_hours < self.removed_at_hours
        )

    def rate(self, segment: str, t_hours: float) -> float:
        """The true success rate for a recipient in ``segment`` sent at ``t_hours``."""
        rate, by_segment = self.rate_click, self.segment_rates
        for change in self.rate_changes:
            if change.at_hours > t_hours:
                break
            rate, by_segment = change.rate_click, change.segment_rates
        return by_segment.get(segment, rate) if by_segment is not None else rate


@dataclass(frozen=True)
class Scenario:
    """A pinned simulated experiment: arms, delays, segments and traffic."""

    name: str
    description: str
    arms: tuple[ArmSpec, ...]
    delay: DelaySpec = field(
        default_factory=lambda: DelaySpec(_CLICK_DELAY_MEDIAN_HOURS, _CLICK_DELAY_SIGMA)
    )
    unsub_delay: DelaySpec = field(
        default_factory=lambda: DelaySpec(_UNSUB_DELAY_MEDIAN_HOURS, _UNSUB_DELAY_SIGMA)
    )
    segments: Mapping[str, float] = field(default_factory=lambda: {"all": 1.0})
    horizon_hours: float = 168.0
    sends_per_hour: float = 300.0
    primary_metric: str = "click"

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("arms: need at least one arm")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be unique, got {names}")
        if not self.segments or any(w <= 0.0 for w in self.segments.values()):
            raise ValueError("segments: need at least one segment, each with weight > 0")
        if not math.isclose(sum(self.segments.values()), 1.0, abs_tol=1e-9):
            raise ValueError("segments: weights must sum to 1")
        if not self.horizon_hours > 0.0:
            raise ValueError(f"horizon_hours: must be > 0, got {self.horizon_hours!r}")
        if not self.sends_per_hour > 0.0:
            raise ValueError(f"sends_per_hour: must be > 0, got {self.sends_per_hour!r}")
        if self.primary_metric not in ("click", "conversion"):
            raise ValueError("primary_metric: must be 'click' or 'conversion'")
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "segments", MappingProxyType(dict(self.segments)))

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.arms)

    def live_arms(self, t_hours: float) -> tuple[int, ...]:
        """Indices of the arms the scenario has live at ``t_hours``."""
        return tuple(i for i, arm in enumerate(self.arms) if arm.is_live(t_hours))

    def change_points(self) -> tuple[float, ...]:
        """Every time an arm is added, removed or changes rate, sorted."""
        times = {arm.added_at_hours for arm in self.arms if arm.added_at_hours > 0.0}
        times |= {arm.removed_at_hours for arm in self.arms if arm.removed_at_hours is not None}
        times |= {change.at_hours for arm in self.arms for change in arm.rate_changes}
        return tuple(sorted(times))


@dataclass(frozen=True)
class Outcomes:
    """What n recipients of one arm did: primary-metric success and unsubscribe.

    Delays are hours from the send; they are NaN where the event did not happen.
    """

    click: BoolArray
    click_delay_hours: FloatArray
    unsub: BoolArray
    unsub_delay_hours: FloatArray


@dataclass(frozen=True)
class SimulationStreams:
    """Independent generators for one simulated run (see the module docstring).

    ``arms[i]`` feeds ``draw_outcomes`` for arm i; ``segments`` draws
    recipients' segments; ``policy`` is for the policy's own sampling, kept
    apart so a policy that draws more does not shift the audience.
    """

    arms: tuple[np.random.Generator, ...]
    segments: np.random.Generator
    policy: np.random.Generator


def simulation_streams(seed: int, scenario: Scenario) -> SimulationStreams:
    """Fresh streams for (seed, scenario): the same seed gives the same audience.

    Spawned from ``np.random.SeedSequence(seed)``, so children are
    statistically independent and an arm's stream depends only on the seed
    and its index, not on how many arms the scenario has.
    """
    root = np.random.SeedSequence(seed)
    segments_seq, policy_seq, arms_seq = root.spawn(3)
    return SimulationStreams(
        arms=tuple(np.random.default_rng(s) for s in arms_seq.spawn(len(scenario.arms))),
        segments=np.random.default_rng(segments_seq),
        policy=np.random.default_rng(policy_seq),
    )


def _arm(scenario: Scenario, arm_index: int) -> ArmSpec:
    if not 0 <= arm_index < len(scenario.arms):
        raise ValueError(f"arm_index: must be in [0, {len(scenario.arms)}), got {arm_index}")
    return scenario.arms[arm_index]


def _check_segment(scenario: Scenario, segment: str) -> None:
    if segment not in scenario.segments:
        raise ValueError(f"segment: {segment!r} is not one of {sorted(scenario.segments)}")


def true_rate(scenario: Scenario, arm_index: int, segment: str, t_hours: float) -> float:
    """The true primary-metric rate of an arm for a segment at a send time."""
    _check_segment(scenario, segment)
    return _arm(scenario, arm_index).rate(segment, t_hours)


def best_rate(
    scenario: Scenario, segment: str, t_hours: float, live_arms: Sequence[int] | None = None
) -> float:
    """The best true rate among ``live_arms`` (default: the scenario's live arms then)."""
    arms = scenario.live_arms(t_hours) if live_arms is None else tuple(live_arms)
    if not arms:
        raise ValueError(f"live_arms: no arm is live at t_hours={t_hours}")
    return max(true_rate(scenario, i, segment, t_hours) for i in arms)


def draw_segments(scenario: Scenario, n: int, rng: np.random.Generator) -> npt.NDArray[np.str_]:
    """Segments of n recipients, drawn by the scenario's weights."""
    names = list(scenario.segments)
    weights = np.array([scenario.segments[s] for s in names])
    return np.asarray(rng.choice(np.array(names), size=n, p=weights / weights.sum()))


def draw_outcomes(
    scenario: Scenario,
    arm_index: int,
    segment: str,
    t_hours: float,
    n: int,
    rng: np.random.Generator,
) -> Outcomes:
    """Outcomes of n sends of an arm to ``segment`` at ``t_hours``.

    Each recipient consumes exactly four uniforms from ``rng``, in order:
    success, success delay, unsubscribe, unsubscribe delay.
    """
    arm = _arm(scenario, arm_index)
    _check_segment(scenario, segment)
    if t_hours < arm.added_at_hours:
        raise ValueError(f"t_hours: arm {arm.name!r} is added at {arm.added_at_hours} h")
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    uniform = rng.random((n, 4))
    click = uniform[:, 0] < arm.rate(segment, t_hours)
    unsub = uniform[:, 2] < arm.rate_unsub
    return Outcomes(
        click=click,
        click_delay_hours=np.where(click, scenario.delay.from_uniform(uniform[:, 1]), np.nan),
        unsub=unsub,
        unsub_delay_hours=np.where(unsub, scenario.unsub_delay.from_uniform(uniform[:, 3]), np.nan),
    )


@dataclass(frozen=True)
class TagAudience:
    """An audience whose click rate follows a variant's tags through hidden effects.

    logit(rate) = base_logit + sum of the effects of the arm's tags (tags
    without an effect add nothing). A loop that learns tag effects from arm
    results and proposes arms with the good tags should compound its gains.
    """

    base_logit: float
    tag_effects: Mapping[str, float]

    def __post_init__(self) -> None:
        if not math.isfinite(self.base_logit):
            raise ValueError("base_logit: must be finite")
        if not all(math.isfinite(v) for v in self.tag_effects.values()):
            raise ValueError("tag_effects: must be finite")
        object.__setattr__(self, "tag_effects", MappingProxyType(dict(self.tag_effects)))

    def rate(self, tags: Sequence[str]) -> float:
        """The click rate of an arm carrying ``tags`` (each tag counted once)."""
        effect = sum(self.tag_effects.get(tag, 0.0) for tag in set(tags))
        return float(expit(self.base_logit + effect))

    def arm(self, name: str, tags: Sequence[str], *, added_at_hours: float = 0.0) -> ArmSpec:
        """An arm whose click rate comes from its tags."""
        return ArmSpec(
            name=name,
            rate_click=self.rate(tags),
            tags=tuple(tags),
            added_at_hours=added_at_hours,
        )


def tag_audience(base_rate: float = 0.025) -> TagAudience:
    """The pinned tag audience: questions and personalisation help, emoji hurt.

    Effects are on the log-odds scale; at a 2.5% base a question lifts the
    rate to about 3.35%, an emoji drops it to about 2.06%.
    """
    _check_rate("base_rate", base_rate)
    return TagAudience(
        base_logit=float(logit(base_rate)),
        tag_effects={
            "question": 0.30,
            "personalized": 0.20,
            "length:short": 0.15,
            "urgency": -0.10,
            "length:long": -0.10,
            "emoji": -0.20,
        },
    )


def tag_scenario(
    audience: TagAudience,
    arm_tags: Mapping[str, Sequence[str]],
    *,
    name: str = "tags",
    horizon_hours: float = 336.0,
    sends_per_hour: float = 300.0,
) -> Scenario:
    """A scenario whose starting arms (name -> tags) get their rates from ``audience``."""
    return Scenario(
        name=name,
        description="Click rates follow the arms' tags through hidden effects.",
        arms=tuple(audience.arm(arm_name, tags) for arm_name, tags in arm_tags.items()),
        horizon_hours=horizon_hours,
        sends_per_hour=sends_per_hour,
    )


def _arms(rates: Sequence[float], prefix: str = "arm") -> tuple[ArmSpec, ...]:
    return tuple(ArmSpec(f"{prefix}-{i}", rate) for i, rate in enumerate(rates))


def pinned_scenarios() -> dict[str, Scenario]:
    """The benchmark's scenarios, by name. Built fresh on every call."""
    scenarios = [
        Scenario(
            name="stationary",
            description="Five subject lines, clicks 1.2-4.0%, nothing changes for a week.",
            arms=_arms([0.012, 0.020, 0.026, 0.031, 0.040]),
        ),
        Scenario(
            name="stationary_many",
            description="Eight subject lines, clicks 1.0-3.8%, several close to the best.",
            arms=_arms([0.010, 0.015, 0.018, 0.022, 0.025, 0.028, 0.032, 0.038]),
        ),
        Scenario(
            name="best_arm_swap",
            description=(
                "The best arm (4.0%) fatigues to 1.8% at 72 h while arm-1 rises from "
                "2.5% to 4.5%: a policy must notice the swap and move."
            ),
            arms=(
                ArmSpec("arm-0", 0.020),
                ArmSpec("arm-1", 0.025, rate_changes=(RateChange(72.0, 0.045),)),
                ArmSpec("arm-2", 0.030),
                ArmSpec("arm-3", 0.040, rate_changes=(RateChange(72.0, 0.018),)),
            ),
        ),
        Scenario(
            name="guardrail_trap",
            description=(
                "arm-3 clicks best (4.5%) but unsubscribes at 0.75%, three times the "
                "others' 0.25%: the guardrail must suspend it despite its clicks."
            ),
            arms=(
                ArmSpec("arm-0", 0.030),
                ArmSpec("arm-1", 0.032),
                ArmSpec("arm-2", 0.036),
                ArmSpec("arm-3", 0.045, rate_unsub=3 * _UNSUB_RATE),
            ),
        ),
        Scenario(
            name="arms_added_midrun",
            description=(
                "Three arms from the start; at 48 h arm-3 (4.2%, the new best) and "
                "arm-4 (1.5%) are added, while the first arms' clicks are still arriving."
            ),
            arms=(
                *_arms([0.020, 0.025, 0.030]),
                ArmSpec("arm-3", 0.042, added_at_hours=48.0),
                ArmSpec("arm-4", 0.015, added_at_hours=48.0),
            ),
        ),
        Scenario(
            name="segments",
            description=(
                "Engaged (60%) and lapsed (40%) readers with different winners: arm-0 "
                "wins engaged (4.5%) but is poor for lapsed (1.2%); arm-1 wins lapsed (2.8%)."
            ),
            arms=(
                ArmSpec("arm-0", 0.032, segment_rates={"engaged": 0.045, "lapsed": 0.012}),
                ArmSpec("arm-1", 0.029, segment_rates={"engaged": 0.030, "lapsed": 0.028}),
                ArmSpec("arm-2", 0.028, segment_rates={"engaged": 0.035, "lapsed": 0.018}),
                ArmSpec("arm-3", 0.023, segment_rates={"engaged": 0.025, "lapsed": 0.020}),
            ),
            segments={"engaged": 0.6, "lapsed": 0.4},
        ),
        Scenario(
            name="conversions",
            description=(
                "Conversions at 0.4-1.4% with long delays (median 20 h, 90th percentile "
                "about 4.4 days, 5% past a 7-day window) over two weeks."
            ),
            arms=_arms([0.004, 0.007, 0.010, 0.014]),
            delay=DelaySpec(median_hours=20.0, sigma=1.3),
            horizon_hours=336.0,
            sends_per_hour=600.0,
            primary_metric="conversion",
        ),
    ]
    return {scenario.name: scenario for scenario in scenarios}


# Realistic clocks (issue 10): how long feedback takes on each channel.
PUSH_CLICK_DELAY = DelaySpec(median_hours=20.0 / 3600.0, sigma=1.0)  # p99 about 3.5 minutes
EMAIL_CLICK_DELAY = DelaySpec(median_hours=1.0, sigma=1.5)  # p10 9 minutes, p90 6.8 hours
CONVERSION_DELAY = DelaySpec(median_hours=30.0, sigma=1.0)  # p10 8 hours, p90 4.5 days


def clock_scenarios() -> dict[str, Scenario]:
    """Scenarios on the channels' own clocks, from seconds to days. Built fresh on every call.

    Each keeps the experiment's defaults (7-day window): the service must serve push, email
    and conversions alike with no knob set.
    """
    scenarios = [
        Scenario(
            name="fast",
            description="Push: clicks 2-5% arriving within seconds (median 20 s), one day.",
            arms=_arms([0.020, 0.035, 0.050]),
            delay=PUSH_CLICK_DELAY,
            unsub_delay=DelaySpec(median_hours=0.05, sigma=1.0),
            horizon_hours=24.0,
            sends_per_hour=600.0,
        ),
        Scenario(
            name="email",
            description="Email: clicks 1.5-3.5%, log-normal delays with a median of 1 h, 4 days.",
            arms=_arms([0.015, 0.025, 0.035]),
            delay=EMAIL_CLICK_DELAY,
            horizon_hours=96.0,
            sends_per_hour=300.0,
        ),
        Scenario(
            name="conversions",
            description=(
                "Conversions 0.4-1.4% with delays of a day or more (median 30 h, 90th "
                "percentile 4.5 days), two weeks."
            ),
            arms=_arms([0.004, 0.007, 0.010, 0.014]),
            delay=CONVERSION_DELAY,
            horizon_hours=336.0,
            sends_per_hour=600.0,
            primary_metric="conversion",
        ),
        Scenario(
            name="swap",
            description=(
                "Email clocks; the best arm (4.0%) fatigues to 1.8% at 48 h while arm-1 rises "
                "from 2.5% to 4.5%, five days."
            ),
            arms=(
                ArmSpec("arm-0", 0.020),
                ArmSpec("arm-1", 0.025, rate_changes=(RateChange(48.0, 0.045),)),
                ArmSpec("arm-2", 0.030),
                ArmSpec("arm-3", 0.040, rate_changes=(RateChange(48.0, 0.018),)),
            ),
            delay=EMAIL_CLICK_DELAY,
            horizon_hours=120.0,
            sends_per_hour=300.0,
        ),
    ]
    return {scenario.name: scenario for scenario in scenarios}
