"""Per-tag effects on an arm's success odds: a meta-regression of arm log-odds on tag
indicators with an arm-level random effect.

Why not pool exposures? Two arms that share a tag differ in everything else about their
text, so an arm's true rate varies around what its tags predict. Pooling exposures treats
every recipient as an independent draw of the tag's effect and gives intervals that shrink
with traffic even when there are only three arms behind the tag. Here the unit of evidence
is the arm: each arm's log-odds y_a has sampling variance v_a, plus a between-arm variance
tau^2 that no amount of traffic removes, so the interval is bounded by how many arms carry
(and lack) the tag.

Estimation:
1. y_a = log((s_a + 1/2) / (n_a - s_a + 1/2)), v_a = 1/(s_a + 1/2) + 1/(n_a - s_a + 1/2)
   (Haldane-Anscombe: finite for arms with no successes or no failures).
2. tau^2 by the method of moments for meta-regression (DerSimonian-Laird generalised):
   from the fixed-effect residual statistic Q_E, tau^2 = max(0, (Q_E - df) / c) with
   c = tr(W) - tr((X'WX)^-1 X'W^2 X), W = diag(1/v_a), df = arms - parameters.
3. Weighted least squares with weights 1/(v_a + tau^2).
4. Intervals with the Knapp-Hartung adjustment (variance scaled by the weighted residual
   mean square, floored at 1, and a t quantile on df degrees of freedom): with a handful of
   arms the normal quantile and a plug-in tau^2 under-cover badly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats


@dataclass(frozen=True, slots=True)
class TagEffect:
    """The change in log-odds of success associated with carrying `tag`, all else equal."""

    tag: str
    effect: float
    ci_low: float
    ci_high: float
    std_error: float
    arms_with: int
    arms_without: int
    exposures: int  # exposures of the arms that carry the tag
    # Across a library's campaigns (bandits.library_effects): the campaigns whose arms
    # contrast the tag, and how many of them point the same way. None within one experiment.
    campaigns: int | None = None
    campaigns_agreeing: int | None = None

    @property
    def odds_ratio(self) -> float:
        return float(np.exp(self.effect))

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0.0 or self.ci_high < 0.0


@dataclass(frozen=True, slots=True)
class TagModel:
    intercept: float
    tau2: float  # between-arm variance of log-odds not explained by the tags
    df: int  # residual degrees of freedom (arms used - parameters)
    arms_used: int
    effects: tuple[TagEffect, ...]


def _validate(
    successes: ArrayLike, exposures: ArrayLike, tags: Sequence[Sequence[str]], min_exposures: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[frozenset[str]]]:
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(exposures, dtype=np.float64)
    if s.ndim != 1 or n.ndim != 1:
        raise ValueError("successes and exposures must be 1-D arrays (one entry per arm)")
    if s.shape != n.shape:
        raise ValueError(f"successes has {s.size} arms but exposures has {n.size}")
    if len(tags) != n.size:
        raise ValueError(f"tags has {len(tags)} entries but there are {n.size} arms")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(n))):
        raise ValueError("successes and exposures must be finite")
    if np.any(s < 0) or np.any(n < 0):
        raise ValueError("successes and exposures must not be negative")
    if np.any(s > n):
        raise ValueError("successes must not exceed exposures")
    if min_exposures < 1:
        raise ValueError(f"min_exposures must be at least 1, got {min_exposures}")
    arm_tags: list[frozenset[str]] = []
    for index, entry in enumerate(tags):
        if isinstance(entry, str):
            raise TypeError(f"tags[{index}] must be a sequence of tags, not the string {entry!r}")
        arm_tags.append(frozenset(entry))
    return s, n, arm_tags


def fit_tag_model(
    successes: ArrayLike,
    exposures: ArrayLike,
    tags: Sequence[Sequence[str]],
    *,
    min_exposures: int = 500,
    confidence: float = 0.95,
) -> TagModel | None:
    """Fit the random-effects meta-regression; None when fewer than three arms qualify."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s_all, n_all, tags_all = _validate(successes, exposures, tags, min_exposures)
    keep = n_all >= min_exposures
    s, n = s_all[keep], n_all[keep]
    arm_tags = [t for t, kept in zip(tags_all, keep, strict=True) if kept]
    arms = int(n.size)
    if arms < 3:  # an intercept, one tag and one residual degree of freedom at least
        return None

    y = np.log((s + 0.5) / (n - s + 0.5))
    v = 1.0 / (s + 0.5) + 1.0 / (n - s + 0.5)

    columns, chosen = _design(arm_tags)
    if not chosen:
        return None
    x = np.column_stack([np.ones(arms), *columns])
    df = arms - x.shape[1]

    w = 1.0 / v
    xtw = x.T * w
    xtwx_inv = np.linalg.inv(xtw @ x)
    beta_fixed = xtwx_inv @ (xtw @ y)
    q_e = float(np.sum(w * (y - x @ beta_fixed) ** 2))
    c = float(np.sum(w) - np.trace(xtwx_inv @ ((x.T * w**2) @ x)))
    tau2 = max(0.0, (q_e - df) / c) if c > 0 else 0.0

    w_re = 1.0 / (v + tau2)
    xtw_re = x.T * w_re
    cov = np.linalg.inv(xtw_re @ x)
    beta = cov @ (xtw_re @ y)
    residual_ms = float(np.sum(w_re * (y - x @ beta) ** 2)) / df
    cov = cov * max(1.0, residual_ms)
    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df))

    effects: list[TagEffect] = []
    for position, tag in enumerate(chosen, start=1):
        effect = float(beta[position])
        std_error = float(np.sqrt(cov[position, position]))
        carries = np.array([tag in t for t in arm_tags])
        effects.append(
            TagEffect(
                tag=tag,
                effect=effect,
                ci_low=effect - quantile * std_error,
                ci_high=effect + quantile * std_error,
                std_error=std_error,
                arms_with=int(carries.sum()),
                arms_without=int(arms - carries.sum()),
                exposures=int(n[carries].sum()),
            )
        )
    effects.sort(key=lambda e: e.tag)
    return TagModel(
        intercept=float(beta[0]), tau2=tau2, df=df, arms_used=arms, effects=tuple(effects)
    )


def _design(arm_tags: list[frozenset[str]]) -> tuple[list[NDArray[np.float64]], list[str]]:
    """Tag indicator columns that keep the design full rank with a residual degree of
    freedom left. Tags carried by every arm or by none are not estimable; a tag that always
    travels with another is confounded with it and is left out (the first, most balanced
    one speaks for both). Most balanced tags go first: they carry the most information."""
    arms = len(arm_tags)
    counts: dict[str, int] = {}
    for entry in arm_tags:
        for tag in entry:
            counts[tag] = counts.get(tag, 0) + 1
    candidates = sorted(
        (tag for tag, count in counts.items() if 0 < count < arms),
        key=lambda tag: (-min(counts[tag], arms - counts[tag]), tag),
    )
    columns: list[NDArray[np.float64]] = []
    chosen: list[str] = []
    current = np.ones((arms, 1))
    for tag in candidates:
        if arms - (len(chosen) + 2) < 1:
            break
        column = np.array([1.0 if tag in entry else 0.0 for entry in arm_tags])
        trial = np.column_stack([current, column])
        if np.linalg.matrix_rank(trial) == trial.shape[1]:
            current = trial
            columns.append(column)
            chosen.append(tag)
    return columns, chosen


def estimate_tag_effects(
    successes: ArrayLike,
    exposures: ArrayLike,
    tags: Sequence[Sequence[str]],
    *,
    min_exposures: int = 500,
    confidence: float = 0.95,
) -> list[TagEffect]:
    """Per-tag log-odds effects with intervals, from arms with at least `min_exposures`.

    Returns an empty list when fewer than three arms qualify or no tag varies across them.
    """
    model = fit_tag_model(
        successes, exposures, tags, min_exposures=min_exposures, confidence=confidence
    )
    return [] if model is None else list(model.effects)
