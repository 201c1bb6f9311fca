"""How young decisions count in the evaluation: the policy's delay CDF, and how to redraw it.

The policy discounts a decision of age a to F(a) of an exposure, with F from the snapshot
(``payload["delay"]``: the central CDF and the CDFs at the delay fit's sigma points). The
evaluation applies the same F, so its figures and the policy's posteriors agree on what a young
decision is worth. Where the snapshot does not carry the curve (written before the delay model
did), the policy's estimator (``bandits.delay_model.fit_delay_model``) is run on the log's own
successes instead, and the result says so.

The bootstrap also needs F's own error, which for a young experiment is the larger part: how
much is still to come is an extrapolation. The sigma points come in pairs theta +- sqrt(2) L_k
(L the Cholesky root of the fit's covariance), so to first order a Gaussian draw
theta = centre + L z moves F by sum_k z_k (F_k+ - F_k-) / (2 sqrt 2): a redraw of F costs a few
array operations, at a few dozen log-spaced age nodes (F is smooth in age).

Where the delays were found mixed (a second, slower component beats one log-normal by BIC:
``bandits.delay_mixture``), the snapshot also carries the sigma-point CDFs of the fit to the
slowest delays (``tail_values``), and half the resamples draw F from that fit's uncertainty
instead: the intervals allow for the slow tail as the arms' reported interval does, while the
point values stay on the policy's F.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from bandits.cohort_ages import cohort_cdf
from bandits.delay import DelayCDF
from bandits.delay_model import MATURE_SHARE, fit_delay_model
from service.core.vocabulary import OVERALL
from service.policy.snapshot import Floats, Snapshot
from service.reporting.evaluation.estimates import DelayCorrection
from service.reporting.repository import LoggedDecisions

FloatArray = npt.NDArray[np.float64]

AGE_NODES = 40
SMALLEST_NODE_HOURS = 1.0 / 3600.0
# An F drawn below this is floored: a decision never counts as nothing while it has a chance.
SMALLEST_F = 1e-6


@dataclass(frozen=True)
class Curves:
    """The policy's delay CDF, the CDFs at its fit's sigma points, and those of the tail fit
    (empty unless the delays were found mixed: ``bandits.delay_model``)."""

    cdf: DelayCDF
    spread: tuple[DelayCDF, ...] = ()
    tail: tuple[DelayCDF, ...] = ()
    # Per contradicted segment (``Snapshot.contradicted_curves``): the curve its arms used
    # and the "slow wave" bound; empty outside snapshots.
    contradicted: Mapping[str, tuple[DelayCDF, DelayCDF]] = field(default_factory=dict)


def snapshot_curves(payload: Mapping[str, Any] | None, window_hours: float) -> Curves | None:
    """The delay CDF the snapshot's policy used and its sigma-point CDFs, for this window."""
    delay = (payload or {}).get("delay") or {}
    try:
        if not np.isclose(float(delay["window_hours"]), window_hours):
            return None  # another epoch's window: not this evaluation's correction
        edges = np.asarray(delay["edges_hours"], dtype=np.float64)

        def curve(values: Sequence[float]) -> DelayCDF:
            return DelayCDF(
                float(window_hours),
                edges,
                np.asarray(values, dtype=np.float64),
                float(delay.get("observations", 0.0)),
                float(delay.get("prior_weight", 0.0)),
            )

        return Curves(
            curve(delay["values"]),
            tuple(curve(v) for v in delay.get("spread_values") or ()),
            tuple(curve(v) for v in delay.get("tail_values") or ()),
            {name: (curve(c), curve(least)) for name, (c, least) in _contradicted(payload).items()},
        )
    except (KeyError, TypeError, ValueError):
        return None  # an older snapshot without the curve: the log's own estimate stands in


def _contradicted(payload: Mapping[str, Any] | None) -> dict[str, tuple[Floats, Floats]]:
    """The curves of ``Snapshot.contradicted_curves`` per contradicted segment."""
    if not payload or not (payload.get("delay") or {}).get("contradicted"):
        return {}
    snapshot = Snapshot.from_json(payload)
    pairs = {name: snapshot.contradicted_curves(name) for name in snapshot.contradicted}
    return {name: pair for name, pair in pairs.items() if pair is not None}


def log_curves(decisions: LoggedDecisions, window_hours: float) -> Curves:
    """The policy's delay model fitted to the log's own successes."""
    ages = np.asarray(decisions.age_hours, dtype=np.float64)
    won = np.asarray(decisions.success, dtype=bool)
    delays = np.minimum(np.asarray(decisions.delay_hours, dtype=np.float64)[won], ages[won])
    model = fit_delay_model(delays, ages[won], window_hours)
    return Curves(model.cdf, tuple(model.spread), tuple(model.tail))


def _moves(spread: Sequence[DelayCDF], nodes: FloatArray) -> FloatArray:
    """Per sigma-point pair k: F's move per unit of z_k (see the module docstring)."""
    pairs = len(spread) // 2
    return np.array(
        [
            (spread[2 * k](nodes) - spread[2 * k + 1](nodes)) / (2.0 * np.sqrt(2.0))
            for k in range(pairs)
        ]
    ).reshape(pairs, nodes.size)


def age_nodes(window_hours: float) -> FloatArray:
    return np.geomspace(SMALLEST_NODE_HOURS, window_hours, AGE_NODES)


def nearest_node(ages: FloatArray, nodes: FloatArray) -> npt.NDArray[np.int64]:
    """The node nearest each age on a log scale (ages at or past the window: the last)."""
    log_nodes = np.log(nodes)
    midpoints = (log_nodes[1:] + log_nodes[:-1]) / 2.0
    safe = np.log(np.clip(ages, nodes[0], nodes[-1]))
    return np.searchsorted(midpoints, safe, side="left").astype(np.int64)


def cohort_ages(decisions: LoggedDecisions, now: datetime) -> tuple[FloatArray, FloatArray]:
    """Each decision's age as the policy counts it: the mean age at ``now`` of its cohort, the
    decisions of one segment and arm in one exposure hour (``service.policy.cohorts``), and
    the spread (standard deviation) of that cohort's ages.

    The snapshot discounts a cohort by the two-point quadrature of F over its ages
    (``bandits.cohort_ages.cohort_cdf``: the mean and the spread, which is what its statistics
    keep), not by the mean of its decisions' F(age); the evaluation does the same, so that read
    at the snapshot's time its maturity is the arms' (exposure-weighted) and its rates are the
    arms' corrected rates pooled.
    """
    ages = np.asarray(decisions.age_hours, dtype=np.float64)
    if ages.size == 0:
        return ages, ages
    hours = np.floor(now.timestamp() / 3600.0 - ages)
    _, segment = np.unique(np.asarray(decisions.segment, dtype=object), return_inverse=True)
    _, arm = np.unique(np.asarray(decisions.arm_id, dtype=np.int64), return_inverse=True)
    _, hour = np.unique(hours, return_inverse=True)
    key = (segment.reshape(-1) * (arm.max() + 1) + arm.reshape(-1)) * (hour.max() + 1) + hour
    _, cell = np.unique(key.reshape(-1), return_inverse=True)
    cell = cell.reshape(-1)
    counts = np.bincount(cell)
    mean = np.bincount(cell, weights=ages) / counts
    variance = np.bincount(cell, weights=(ages - mean[cell]) ** 2) / counts
    return (
        np.asarray(mean[cell], dtype=np.float64),
        np.asarray(np.sqrt(variance)[cell], dtype=np.float64),
    )


def delay_correction(
    decisions: LoggedDecisions,
    *,
    window_hours: float,
    payload: Mapping[str, Any] | None,
    now: datetime,
) -> tuple[DelayCorrection, dict[str, Any]]:
    """The correction for this log at ``now``, and what to say about it in the result."""
    from_snapshot = snapshot_curves(payload, window_hours)
    young = any(a < window_hours for a in decisions.age_hours)
    if from_snapshot is not None:
        curves, source = from_snapshot, "snapshot"
    elif young:
        curves, source = log_curves(decisions, window_hours), "log"
    else:
        # Every decision has matured: F = 1 for all of them, no curve is needed.
        flat = DelayCDF(window_hours, np.array([0.0, window_hours]), np.array([1.0, 1.0]), 0, 0)
        curves, source = Curves(flat), "matured"
    cdf = curves.cdf
    nodes = age_nodes(window_hours)
    centre = np.maximum(cdf(nodes), SMALLEST_F)
    moves = _moves(curves.spread, nodes)
    tail_moves = _moves(curves.tail, nodes)
    tail_centre = np.mean([c(nodes) for c in curves.tail], axis=0) if curves.tail else centre

    def redraw(rng: np.random.Generator, m: int) -> FloatArray:
        drawn = centre[None, :] + rng.standard_normal((m, moves.shape[0])) @ moves
        if curves.tail:
            # Where the delays were found mixed, half the resamples draw F from the tail
            # fit's own uncertainty, as the reported interval pools both fits' sigma points.
            from_tail = rng.random(m) < 0.5
            tail = tail_centre[None, :] + rng.standard_normal((m, tail_moves.shape[0])) @ tail_moves
            drawn = np.where(from_tail[:, None], tail, drawn)
        drawn = np.clip(drawn, SMALLEST_F, 1.0)
        drawn[:, -1] = 1.0  # the window's node: matured decisions
        return np.asarray(drawn / centre[None, :], dtype=np.float64)

    ages, spread = cohort_ages(decisions, now)
    exposure = cohort_cdf(cdf, ages, spread)  # 1 once the cohort's younger point has matured
    bounds, bounded = contradicted_bounds(curves, decisions, ages, spread, exposure)
    wave = unseen_wave_share(payload)
    if wave is not None:
        # Young decisions no contradicted fit bounds: between "nothing more to come" (the
        # arms' central F) and "a slower wave still to come" (that F times the wave's share).
        free = np.ones(exposure.size, dtype=bool) if bounds is None else ~np.isfinite(bounds[0])
        free &= ages < window_hours
        bounds = np.full((2, exposure.size), np.nan) if bounds is None else bounds
        bounds[0, free] = exposure[free] * wave
        bounds[1, free] = exposure[free]
    correction = DelayCorrection(
        exposure=np.asarray(exposure, dtype=np.float64),
        node=nearest_node(ages, nodes),
        redraw=redraw,
        bounds=bounds,
    )
    info = {
        "source": source,
        "median_hours": cdf.median_hours() if source != "matured" else None,
        "observations": cdf.observations,
        # The intervals also draw F from the tail fit (the delays were found mixed).
        "mixed": bool(curves.tail),
        # Segments whose delay fit the data contradict (``OVERALL``: all traffic): there the
        # intervals run between "a slow wave still to come" and "nothing more to come".
        "contradicted": bounded,
        # Too young to rule out a slower wave the data cannot see yet: at most this share of
        # the eventual successes may have arrived, and the intervals allow for it.
        "unseen_wave_share": wave,
    }
    return correction, info


def unseen_wave_share(payload: Mapping[str, Any] | None) -> float | None:
    """How much of the central maturity a slow wave not yet begun may leave (the arms' low
    end over their centre, all traffic, weighted by exposures), where it is what makes the
    arms too early to judge: the centre says matured, the low end does not
    (``bandits.delay_unseen``). None otherwise: the fit's own doubt is redrawn already."""
    if not payload:
        return None
    try:
        overall = Snapshot.from_json(payload).overall
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if overall is None or overall.maturity is None or overall.maturity_low is None:
        return None
    weights = np.asarray(overall.exposures, dtype=np.float64)
    if weights.sum() <= 0:
        return None
    centre = float(np.average(overall.maturity, weights=weights))
    low = float(np.average(overall.maturity_low, weights=weights))
    if not low < MATURE_SHARE <= centre:
        return None
    return low / centre


def contradicted_bounds(
    curves: Curves,
    decisions: LoggedDecisions,
    ages: FloatArray,
    spread: FloatArray,
    exposure: FloatArray,
) -> tuple[FloatArray | None, list[str]]:
    """Per decision, F under the two bounds of a contradicted delay fit (2, n), NaN where the
    fit stands, and the segments they apply to; ``exposure`` is set to the arms' central F
    for the decisions of a contradicted segment (all traffic's is already ``curves.cdf``).

    The snapshot says where the fit is contradicted and which curves the arms' figures used
    there (``Snapshot.contradicted_curves``): the evaluation reads the same verdict and the
    same F as the arms, so its intervals carry the spread between the bounds that the arms'
    intervals carry. Where all traffic is contradicted its curves apply to every decision
    (the arms' all-traffic figures used them); otherwise each contradicted segment's apply
    to its own decisions.
    """
    found = curves.contradicted
    if not found:
        return None, []
    names = [OVERALL] if OVERALL in found else sorted(found)
    segment = np.asarray(decisions.segment, dtype=object)
    bounds = np.full((2, exposure.size), np.nan)
    applied = []
    for name in names:
        mask = np.ones(exposure.size, dtype=bool) if name == OVERALL else segment == name
        if not mask.any():
            continue
        central, least = found[name]
        exposure[mask] = cohort_cdf(central, ages[mask], spread[mask])
        bounds[0, mask] = cohort_cdf(least, ages[mask], spread[mask])
        bounds[1, mask] = 1.0
        applied.append(name)
    return (bounds if applied else None), applied
