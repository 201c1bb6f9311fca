"""Lift over an even split and off-policy estimates from one log, with one bootstrap (no I/O).

Point values come from ``bandits.offpolicy`` on the exact logged propensities. The intervals
come from one percentile bootstrap over decisions shared by every figure, so they are mutually
consistent (the lift and the uniform value move together across resamples).

Why not call ``bandits.offpolicy``'s bootstrap per figure: it resamples decision indices, which
costs about 2 s per figure on the 200k decisions the report may consider, and the report needs
seven figures. Every estimator here is a ratio of sums over decisions, and decisions with the
same reward and the same importance weights are interchangeable in every sum, so resampling
decisions is resampling those *cells*: with the Poisson bootstrap, a cell of c decisions
appears Poisson(c) times. To keep the number of cells small when the allocation changed at
every refresh (each version logs its own propensities), weights are rounded to three
significant digits for the resampling only; that moves an interval end by about 1e-3 of its
value, below the Monte Carlo error of 500 resamples.

Young decisions (issue 10). A decision of age a has had F(a) of its eventual chance of success
(F the policy's delay CDF), so it counts as F(a) of a decision wherever a count or a weight
enters a denominator: the policy's value is sum(y) / sum(F), an even split's SNIPS value
sum(w y) / sum(w F). Matured decisions have F = 1 and the estimators are the plain ones. The
bootstrap then has two sources of error to carry: which decisions were logged (resampled as
above), and F itself, estimated from the successes' delays: each resample also draws F from
the delay model's own uncertainty (``DelayCorrection.redraw``), so the interval widens where F
rests on few delays (young experiments) while the point value stays on the policy's F.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bandits.offpolicy import effective_sample_size

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

SIGNIFICANT_DIGITS = 3
# Multinomial counts are drawn in blocks of at most this many cells (resamples x cells).
_BLOCK_CELLS = 4_000_000
# The average share of a target's mass that may fall on arms the log could not choose.
SUPPORT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Target:
    """A policy to evaluate on the log.

    ``probability``: per decision, the probability the target gives the logged arm.
    ``covered``: the decisions where every arm the target could choose had a positive logging
    probability; the target is evaluated on those only (elsewhere the log cannot see part of
    what it would do). ``details`` are copied into the result (arm id, snapshot version).
    """

    name: str
    probability: FloatArray
    covered: BoolArray
    details: Mapping[str, Any]


@dataclass(frozen=True)
class EvaluationLog:
    """Matured decisions: the reward, the exact logged propensity, and the even split.

    ``uniform`` is 1/K_i, K_i the arms eligible under the snapshot the decision was made from;
    ``uniform_mass`` the even split's mass on the arms that snapshot could serve (1 unless an
    eligible arm had zero allocation, which a positive exploration share rules out).
    """

    reward: FloatArray
    propensity: FloatArray
    uniform: FloatArray
    uniform_mass: FloatArray

    @property
    def n(self) -> int:
        return int(self.reward.size)


@dataclass(frozen=True)
class DelayCorrection:
    """How decisions younger than the attribution window count (see the module docstring).

    ``exposure``: per decision, F(age) under the policy's delay CDF, the share of its eventual
    chance of success that has had time to arrive (1 once matured). ``node``: per decision,
    the age node its F is redrawn at. ``redraw(rng, m)``: m draws of F from its own
    uncertainty, each as the factor by which it moves F at every node, shape (m, nodes);
    1 at the node of matured decisions.
    """

    exposure: FloatArray
    node: IntArray
    redraw: Callable[[np.random.Generator, int], FloatArray]
    # Where the delay fit the data contradict (``Snapshot.contradicted``): per decision, F
    # under the "slow wave" bound and under "nothing more to come" (2, n), NaN elsewhere.
    # Each resample takes one of the two bounds for all such decisions, so the intervals
    # span the values under either, as the arms' do; the point values stay on ``exposure``.
    bounds: FloatArray | None = None

    @property
    def maturity(self) -> float:
        """The share of the log's eventual evidence that has arrived (1 when all matured)."""
        return float(self.exposure.mean()) if self.exposure.size else 1.0


def _round_significant(values: FloatArray, digits: int) -> FloatArray:
    out = np.zeros_like(values)
    nonzero = values != 0.0
    magnitude = np.floor(np.log10(np.abs(values[nonzero])))
    scale = 10.0 ** (digits - 1 - magnitude)
    out[nonzero] = np.round(values[nonzero] * scale) / scale
    return out


def _interval(value: float, samples: FloatArray, level: float) -> dict[str, float | None]:
    finite = samples[np.isfinite(samples)]
    low: float | None = None
    high: float | None = None
    # As in bandits.offpolicy: if most resamples have no value the rest are the lucky ones.
    if finite.size >= 0.5 * samples.size and finite.size > 0:
        tail = (1.0 - level) / 2.0
        q_low, q_high = np.quantile(finite, [tail, 1.0 - tail])
        low, high = float(q_low), float(q_high)
    return {"value": _finite_or_none(value), "ci_low": low, "ci_high": high}


def _ips_interval(value: float, samples: FloatArray, level: float) -> dict[str, float | None]:
    """IPS of a success rate, held to [0, 1]. Unlike SNIPS, IPS divides by the decisions'
    count rather than their weights, so a resample heavy in large weights, or in young
    decisions whose F is small (and redrawn smaller), can exceed 1 many times over: a click
    rate read as 87,642 on a young log. The rate lies in [0, 1], so clipping loses no
    coverage."""
    return _interval(float(np.clip(value, 0.0, 1.0)), np.clip(samples, 0.0, 1.0), level)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _empty_interval(value: float = float("nan")) -> dict[str, float | None]:
    return {"value": _finite_or_none(value), "ci_low": None, "ci_high": None}


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    safe = np.where(denominator > 0.0, denominator, 1.0)
    return np.where(denominator > 0.0, numerator / safe, np.nan)


def _cells(columns: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Distinct rows of ``columns`` and how many times each occurs."""
    cells, counts, _ = _cells_with_key(columns)
    return cells, counts


def _cells_with_key(columns: FloatArray) -> tuple[FloatArray, FloatArray, IntArray]:
    """Distinct rows of ``columns``, how many times each occurs, and each row's cell.

    Built from per-column codes combined one column at a time (re-coded after each step so
    the combined key never overflows): much faster than ``np.unique(axis=0)``'s row sort.
    """
    key = np.zeros(columns.shape[0], dtype=np.int64)
    for j in range(columns.shape[1]):
        values, code = np.unique(columns[:, j], return_inverse=True)
        _, key = np.unique(key * values.size + code.reshape(-1), return_inverse=True)
        key = key.reshape(-1)
    counts = np.bincount(key).astype(np.float64)
    first = np.full(counts.size, columns.shape[0], dtype=np.int64)
    np.minimum.at(first, key, np.arange(columns.shape[0]))
    return columns[first], counts, key


def resampled_sums(
    cells: FloatArray, counts: FloatArray, *, rng: np.random.Generator, n_boot: int
) -> FloatArray:
    """Column sums of ``cells`` (c rows each) over ``n_boot`` Poisson-bootstrap resamples.

    Each row appears Poisson(1) times in a resample, so a cell of c identical rows appears
    Poisson(c) times: O(cells) per resample instead of O(rows). The Poisson bootstrap is
    asymptotically the multinomial one (the resample size varies, so every figure is taken
    as a ratio to the resampled count, never to n). Returns (n_boot, C).
    """
    sums = np.empty((n_boot, cells.shape[1]), dtype=np.float64)
    block = max(1, _BLOCK_CELLS // max(cells.shape[0], 1))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        draws = rng.poisson(counts, size=(stop - start, counts.size))
        sums[start:stop] = draws.astype(np.float64) @ cells
    return sums


def _validate(log: EvaluationLog, targets: Sequence[Target], delay: DelayCorrection | None) -> None:
    n = log.n
    for name in ("propensity", "uniform", "uniform_mass"):
        if getattr(log, name).shape != (n,):
            raise ValueError(f"{name}: must have one value per decision ({n})")
    if n and (np.any(log.propensity <= 0.0) or np.any(log.propensity > 1.0)):
        raise ValueError("propensity: must be in (0, 1] for every logged decision")
    for target in targets:
        if target.probability.shape != (n,) or target.covered.shape != (n,):
            raise ValueError(f"target {target.name!r}: needs one value per decision ({n})")
    if delay is not None:
        if delay.exposure.shape != (n,) or delay.node.shape != (n,):
            raise ValueError(f"delay: needs one exposure and one node per decision ({n})")
        if n and (np.any(delay.exposure < 0.0) or np.any(delay.exposure > 1.0)):
            raise ValueError("delay.exposure: must be in [0, 1] for every logged decision")
        if delay.bounds is not None and delay.bounds.shape != (2, n):
            raise ValueError(f"delay.bounds: needs two values per decision ({n})")


def evaluate_log(
    log: EvaluationLog,
    targets: Sequence[Target],
    *,
    rng: np.random.Generator,
    n_boot: int = 500,
    level: float = 0.95,
    delay: DelayCorrection | None = None,
) -> dict[str, Any]:
    """The lift over an even split and each target's IPS and SNIPS value, with intervals.

    JSON-able: NaN becomes None. ``lift``: what the logging policy earned per decision
    (``policy``), the SNIPS value of an even split over the arms live at each decision
    (``uniform``), their ``difference``, ``relative`` = difference / uniform, and
    ``successes_gained`` = n * difference. Each target: ``n`` decisions it was evaluated on,
    ``coverage`` = n / all, ``support``, Kish's ``effective_sample_size``, ``ips``, ``snips``.
    With ``delay``, young decisions count as F(age) of a decision (every value is then an
    eventual rate) and ``maturity`` is the share of the eventual evidence that has arrived.
    """
    _validate(log, targets, delay)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    if n_boot < 2:
        raise ValueError(f"n_boot: must be >= 2, got {n_boot!r}")
    n = log.n
    propensity = log.propensity
    exposure = delay.exposure if delay is not None else np.ones(n)
    uniform_support = bool(
        n > 0
        and np.any(log.uniform > 0.0)
        and float(np.mean(1.0 - log.uniform_mass)) <= SUPPORT_TOLERANCE
    )

    # Cell columns: reward, uniform weight, then (covered, weight) per target. Rounded weights
    # only here; the sums each figure needs are built from them after the unique().
    weight_columns = [_round_significant(log.uniform / propensity, SIGNIFICANT_DIGITS)]
    for target in targets:
        weight = np.where(target.covered, target.probability / propensity, 0.0)
        weight_columns.append(_round_significant(weight, SIGNIFICANT_DIGITS))
    sums: FloatArray | None = None
    if n > 0:
        base = [log.reward, weight_columns[0]]
        for target, weight in zip(targets, weight_columns[1:], strict=True):
            base += [target.covered.astype(np.float64), weight]
        columns = np.column_stack(base)
        if delay is None or (delay.bounds is None and bool(np.all(exposure == 1.0))):
            cells, counts = _cells(columns)
            sums = resampled_sums(_expand(cells, len(targets)), counts, rng=rng, n_boot=n_boot)
        else:
            sums = _delayed_sums(columns, delay, len(targets), rng=rng, n_boot=n_boot)

    result: dict[str, Any] = {
        "n": n,
        "level": level,
        "n_boot": n_boot,
        "maturity": delay.maturity if delay is not None else (1.0 if n else None),
        "lift": _lift(log, exposure, sums, uniform_support, level),
        "off_policy": {
            "uniform": _uniform_target(log, exposure, sums, uniform_support, level),
        },
    }
    for j, target in enumerate(targets):
        result["off_policy"][target.name] = _target(log, exposure, target, sums, j, level)
    return result


def _delayed_sums(
    columns: FloatArray,
    delay: DelayCorrection,
    n_targets: int,
    *,
    rng: np.random.Generator,
    n_boot: int,
) -> FloatArray:
    """``resampled_sums`` of ``_expand``'s columns, with young decisions counted as F(age).

    Decisions are grouped into cells by (reward, weights, age node), each carrying the mean of
    its decisions' exact F. Per resample, a cell counts P * min(1, F * ratio[node]) wherever a
    count enters a denominator, and P in the reward sums (P its Poisson count, ratio that
    resample's draw of F).
    """
    bounds = delay.bounds
    bounded = np.zeros(columns.shape[0]) if bounds is None else np.isfinite(bounds[0]) * 1.0
    key_columns = np.column_stack([columns, bounded, delay.node])
    cells, counts, key = _cells_with_key(key_columns)

    def cell_mean(values: FloatArray) -> FloatArray:
        return np.bincount(key, weights=values, minlength=counts.size) / counts

    mean_exposure = cell_mean(delay.exposure)
    rows = cells[:, :-2]
    in_bounds = cells[:, -2] > 0
    node = cells[:, -1].astype(np.int64)
    # F of each cell under each bound (only the bounded cells' are used).
    bound_exposure = (
        np.stack([cell_mean(np.nan_to_num(b, nan=1.0)) for b in bounds])
        if bounds is not None
        else np.ones((2, counts.size))
    )

    expanded = _expand(rows, n_targets)
    # Columns summed over F-weighted counts (denominators) and over plain counts (rewards).
    denominators = [0, 3] + [c for j in range(n_targets) for c in (4 + 3 * j, 6 + 3 * j)]
    plain = [c for c in range(expanded.shape[1]) if c not in denominators]
    sums = np.empty((n_boot, expanded.shape[1]), dtype=np.float64)
    block = max(1, _BLOCK_CELLS // max(counts.size, 1))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        draws = rng.poisson(counts, size=(stop - start, counts.size)).astype(np.float64)
        ratio = delay.redraw(rng, stop - start)
        drawn = np.minimum(mean_exposure[None, :] * ratio[:, node], 1.0)
        if in_bounds.any():
            # One bound per resample ("slow wave" or "nothing more to come") for every
            # decision whose fit was contradicted: F there is unknown between the two.
            coin = rng.integers(0, 2, size=stop - start)
            drawn = np.where(in_bounds[None, :], bound_exposure[coin], drawn)
        weighted = draws * drawn
        sums[start:stop, plain] = draws @ expanded[:, plain]
        sums[start:stop, denominators] = weighted @ expanded[:, denominators]
    # As ``_rate``: a drawn F may not imply a rate above 1 (count >= successes, per ratio).
    sums[:, 0] = np.maximum(sums[:, 0], sums[:, 1])
    sums[:, 3] = np.maximum(sums[:, 3], sums[:, 2])
    for j in range(n_targets):
        sums[:, 6 + 3 * j] = np.maximum(sums[:, 6 + 3 * j], sums[:, 5 + 3 * j])
    return sums


def _expand(cells: FloatArray, n_targets: int) -> FloatArray:
    """From (reward, w_u, [covered, w] per target) to the sums every figure needs.

    Output columns: 1 (the count), reward, w_u * reward, w_u, then per target: covered,
    w * reward, w.
    """
    reward, w_u = cells[:, 0], cells[:, 1]
    out = [np.ones_like(reward), reward, w_u * reward, w_u]
    for j in range(n_targets):
        covered, weight = cells[:, 2 + 2 * j], cells[:, 3 + 2 * j]
        out += [covered, weight * reward, weight]
    return np.column_stack(out)


def _weighted_ratio(numerator: FloatArray, denominator: FloatArray) -> float:
    total = float(np.sum(denominator))
    return float(np.sum(numerator)) / total if total > 0.0 else float("nan")


def _rate(numerator: FloatArray, denominator: FloatArray) -> float:
    """A self-normalised rate: the F-weighted count never falls below the successes seen.

    A young decision counts F(age) of one, and an F so small that the rate would pass 1 is
    contradicted by the successes already in (as in ``bandits.delay_model``'s evidence).
    """
    return _weighted_ratio(numerator, np.maximum(np.sum(denominator), np.sum(numerator)))


def _lift(
    log: EvaluationLog,
    exposure: FloatArray,
    sums: FloatArray | None,
    support: bool,
    level: float,
) -> dict[str, Any]:
    n = log.n
    policy_value = _rate(log.reward, exposure) if n else float("nan")
    ess = effective_sample_size(log.propensity, log.uniform) if n else 0.0
    figures = ("uniform", "difference", "relative", "successes_gained")
    if not support or sums is None:
        out: dict[str, Any] = {"support": False, "effective_sample_size": ess}
        out["policy"] = _empty_interval(policy_value)
        out.update({name: _empty_interval() for name in figures})
        return out
    weight = log.uniform / log.propensity
    uniform_value = _rate(weight * log.reward, weight * exposure)
    difference = policy_value - uniform_value
    policy_samples = _ratio(sums[:, 1], sums[:, 0])
    uniform_samples = _ratio(sums[:, 2], sums[:, 3])
    difference_samples = policy_samples - uniform_samples
    relative_samples = _ratio(difference_samples, uniform_samples)
    relative = difference / uniform_value if uniform_value > 0.0 else float("nan")
    return {
        "support": True,
        "effective_sample_size": ess,
        "policy": _interval(policy_value, policy_samples, level),
        "uniform": _interval(uniform_value, uniform_samples, level),
        "difference": _interval(difference, difference_samples, level),
        "relative": _interval(relative, relative_samples, level),
        "successes_gained": _interval(n * difference, n * difference_samples, level),
    }


def _uniform_target(
    log: EvaluationLog,
    exposure: FloatArray,
    sums: FloatArray | None,
    support: bool,
    level: float,
) -> dict[str, Any]:
    n = log.n
    out: dict[str, Any] = {
        "n": n,
        "coverage": 1.0 if n else 0.0,
        "support": support,
        "effective_sample_size": effective_sample_size(log.propensity, log.uniform) if n else 0.0,
    }
    if not support or sums is None:
        out["ips"], out["snips"] = _empty_interval(), _empty_interval()
        return out
    weight = log.uniform / log.propensity
    out["ips"] = _ips_interval(
        _weighted_ratio(weight * log.reward, exposure), _ratio(sums[:, 2], sums[:, 0]), level
    )
    out["snips"] = _interval(
        _rate(weight * log.reward, weight * exposure),
        _ratio(sums[:, 2], sums[:, 3]),
        level,
    )
    return out


def _target(
    log: EvaluationLog,
    exposure: FloatArray,
    target: Target,
    sums: FloatArray | None,
    j: int,
    level: float,
) -> dict[str, Any]:
    covered = target.covered
    used = int(covered.sum())
    reward, propensity = log.reward[covered], log.propensity[covered]
    matured = exposure[covered]
    probability = target.probability[covered]
    out: dict[str, Any] = {
        **target.details,
        "n": used,
        "coverage": used / log.n if log.n else 0.0,
    }
    support = bool(used > 0 and np.any(probability > 0.0))
    out["support"] = support
    out["effective_sample_size"] = effective_sample_size(propensity, probability) if used else 0.0
    if not support or sums is None:
        out["ips"], out["snips"] = _empty_interval(), _empty_interval()
        return out
    count, weighted, weight = sums[:, 4 + 3 * j], sums[:, 5 + 3 * j], sums[:, 6 + 3 * j]
    w = probability / propensity
    out["ips"] = _ips_interval(_weighted_ratio(w * reward, matured), _ratio(weighted, count), level)
    out["snips"] = _interval(_rate(w * reward, w * matured), _ratio(weighted, weight), level)
    return out
