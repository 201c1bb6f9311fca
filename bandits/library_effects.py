"""Tag effects across campaigns: arm log-odds on tags with an experiment-level and an
arm-level random effect.

Why two random effects? Campaigns differ in ways no tag describes (the offer, the season,
the list they went to), so every arm of one campaign shares a shift in log-odds; and within
a campaign two arms with the same tags still differ in everything else about their text.
Treating the arms of six campaigns as independent draws (the single-experiment model in
`bandits.tag_effects`) would let a campaign that happened to use questions in a good month
pass for evidence that questions help; treating the campaigns as fixed would spend a
parameter on each. Here

    y_a = x_a' beta + u_e(a) + v_a + e_a,
    u_e ~ N(0, sigma2), v_a ~ N(0, tau2), e_a ~ N(0, s_a^2) with s_a^2 known,

y_a and s_a^2 the Haldane-Anscombe log-odds and its variance (as in `tag_effects`). The two
variances are fitted by restricted maximum likelihood (REML: unbiased for the variance
components, which plain ML underestimates with few campaigns), beta by generalised least
squares given them, and the intervals use a t quantile on the residual degrees of freedom
with the covariance scaled by the weighted residual mean square when it exceeds 1 (the
Knapp-Hartung adjustment, as in `tag_effects`): with a handful of campaigns a normal
quantile and plug-in variances under-cover.

For each tag the result says how many campaigns support the claim: those whose own arms
contrast the tag (some arms with it, some without) and, of those, how many show a
within-campaign difference of the same sign as the pooled effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from bandits.tag_effects import TagEffect, _design, _validate

MIN_ARMS = 3


@dataclass(frozen=True, slots=True)
class CampaignTagModel:
    intercept: float
    sigma2: float  # between-campaign variance of log-odds
    tau2: float  # between-arm variance within a campaign, beyond the tags
    df: int
    arms_used: int
    campaigns_used: int
    effects: tuple[TagEffect, ...]


def fit_campaign_tag_model(
    successes: ArrayLike,
    exposures: ArrayLike,
    tags: Sequence[Sequence[str]],
    campaigns: Sequence[str],
    *,
    min_exposures: int = 500,
    confidence: float = 0.95,
) -> CampaignTagModel | None:
    """Fit the two-level model; None when fewer than three arms qualify or no tag varies.

    One entry per arm: its successes, exposures, tags and the campaign (experiment) it
    belongs to. Arms under `min_exposures` are left out.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s_all, n_all, tags_all = _validate(successes, exposures, tags, min_exposures)
    if len(campaigns) != n_all.size:
        raise ValueError(f"campaigns has {len(campaigns)} entries but there are {n_all.size} arms")
    keep = n_all >= min_exposures
    s, n = s_all[keep], n_all[keep]
    arm_tags = [t for t, kept in zip(tags_all, keep, strict=True) if kept]
    groups = [str(c) for c, kept in zip(campaigns, keep, strict=True) if kept]
    arms = int(n.size)
    if arms < MIN_ARMS:
        return None
    columns, chosen = _design(arm_tags)
    if not chosen:
        return None
    x = np.column_stack([np.ones(arms), *columns])
    df = arms - x.shape[1]
    y = np.log((s + 0.5) / (n - s + 0.5))
    v = 1.0 / (s + 0.5) + 1.0 / (n - s + 0.5)
    names = sorted(set(groups))
    z = np.array([[1.0 if g == name else 0.0 for name in names] for g in groups])
    zzt = z @ z.T

    sigma2, tau2 = _reml(y, x, v, zzt)
    cov_v = np.diag(v + tau2) + sigma2 * zzt
    v_inv = np.linalg.inv(cov_v)
    xtvi = x.T @ v_inv
    cov = np.linalg.inv(xtvi @ x)
    beta = cov @ (xtvi @ y)
    residual = y - x @ beta
    residual_ms = float(residual @ v_inv @ residual) / df
    cov = cov * max(1.0, residual_ms)
    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df))

    effects: list[TagEffect] = []
    for position, tag in enumerate(chosen, start=1):
        effect = float(beta[position])
        std_error = float(np.sqrt(cov[position, position]))
        carries = np.array([tag in t for t in arm_tags])
        contrasting, agreeing = _campaign_support(y, carries, groups, effect)
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
                campaigns=contrasting,
                campaigns_agreeing=agreeing,
            )
        )
    effects.sort(key=lambda e: e.tag)
    return CampaignTagModel(
        intercept=float(beta[0]),
        sigma2=sigma2,
        tau2=tau2,
        df=df,
        arms_used=arms,
        campaigns_used=len(names),
        effects=tuple(effects),
    )


def _reml(
    y: NDArray[np.float64], x: NDArray[np.float64], v: NDArray[np.float64], zzt: NDArray[np.float64]
) -> tuple[float, float]:
    """REML estimates of (sigma2, tau2), searched on the log scale from a moment start."""

    def negative_restricted_loglik(params: NDArray[np.float64]) -> float:
        sigma2, tau2 = np.exp(params)
        cov_v = np.diag(v + tau2) + sigma2 * zzt
        sign, logdet = np.linalg.slogdet(cov_v)
        if sign <= 0:
            return 1e12
        v_inv = np.linalg.inv(cov_v)
        xtvix = x.T @ v_inv @ x
        sign_x, logdet_x = np.linalg.slogdet(xtvix)
        if sign_x <= 0:
            return 1e12
        beta = np.linalg.solve(xtvix, x.T @ v_inv @ y)
        residual = y - x @ beta
        return float(0.5 * (logdet + logdet_x + residual @ v_inv @ residual))

    spread = float(np.var(y)) or 1e-4
    start = np.log([max(spread / 2, 1e-6), max(spread / 2, 1e-6)])
    result = optimize.minimize(
        negative_restricted_loglik,
        start,
        method="L-BFGS-B",
        bounds=[(np.log(1e-8), np.log(25.0))] * 2,
    )
    sigma2, tau2 = np.exp(result.x)
    # Values at the lower bound are zero in all but name.
    return (float(sigma2) if sigma2 > 1e-7 else 0.0, float(tau2) if tau2 > 1e-7 else 0.0)


def _campaign_support(
    y: NDArray[np.float64], carries: NDArray[np.bool_], groups: Sequence[str], effect: float
) -> tuple[int, int]:
    contrasting = agreeing = 0
    for name in sorted(set(groups)):
        mine = np.array([g == name for g in groups])
        with_tag, without = y[mine & carries], y[mine & ~carries]
        if with_tag.size and without.size:
            contrasting += 1
            if np.sign(with_tag.mean() - without.mean()) == np.sign(effect):
                agreeing += 1
    return contrasting, agreeing


def estimate_campaign_tag_effects(
    successes: ArrayLike,
    exposures: ArrayLike,
    tags: Sequence[Sequence[str]],
    campaigns: Sequence[str],
    *,
    min_exposures: int = 500,
    confidence: float = 0.95,
) -> list[TagEffect]:
    """Per-tag effects across campaigns; empty when the model cannot be fitted."""
    model = fit_campaign_tag_model(
        successes, exposures, tags, campaigns, min_exposures=min_exposures, confidence=confidence
    )
    return [] if model is None else list(model.effects)
