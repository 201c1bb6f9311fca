"""The delay model the policy uses: the delay CDF learnt at the data's time scale, with its
uncertainty, and the delay-corrected evidence per arm that the posteriors are built on.

``fit_delay_model`` joins two estimates: below the oldest cohort's age the reverse
Kaplan-Meier of ``bandits.delay`` lets the observed delays speak for themselves; above it
(what is still to come) the hazard comes from a log-normal fitted to the same truncated delays
(``bandits.delay_shape``), whose pull fades as data arrive. The four sigma points of that fit
give four more CDFs, so every figure built on F carries the uncertainty of the extrapolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bandits.delay import (
    DelayCDF,
    FloatArray,
    clean_observations,
    delay_grid,
    reverse_hazard_cdf,
    reverse_risk_sets,
)
from bandits.delay_shape import LogNormalShape, fit_lognormal, window_cdf

# Pseudo-successes behind the fitted shape in the nonparametric estimate: enough to steady the
# first few dozen delays, soon outweighed (the pull fades like 20 / (20 + successes)).
DEFAULT_PRIOR_WEIGHT = 20.0

# "Too early to judge": less than half of the eventual evidence has arrived, or the part that
# has (exposures x maturity) is still short of the minimum sample. The report labels such an
# arm, and the loop neither adds, confirms nor prunes a learning on its evidence.
MATURE_SHARE = 0.5
TOO_EARLY = "too early to judge"
JUDGED = "judged"


def too_early(maturity: float, exposures: float, min_exposures: float) -> bool:
    """Whether an arm's evidence is too young to judge (see ``MATURE_SHARE``)."""
    return bool(maturity < MATURE_SHARE or exposures * maturity < min_exposures)


@dataclass(frozen=True, eq=False)
class DelayModel:
    """The central delay CDF and the CDFs at the fit's sigma points (empty: no uncertainty)."""

    cdf: DelayCDF
    spread: tuple[DelayCDF, ...] = ()
    shape: LogNormalShape | None = None

    @classmethod
    def of(cls, cdf: DelayCDF | DelayModel) -> DelayModel:
        """A model from a bare CDF (e.g. a fixed one in a benchmark ablation)."""
        return cdf if isinstance(cdf, DelayModel) else cls(cdf)

    def to_json(self) -> dict[str, object]:
        """The snapshot's ``delay`` block: enough to rebuild ``DelayCDF`` and its spread."""
        cdf = self.cdf
        out: dict[str, object] = {
            "window_hours": cdf.window_hours,
            "edges_hours": [round(float(e), 9) for e in cdf.edges_hours],
            "values": [round(float(v), 9) for v in cdf.values],
            "median_hours": round(cdf.median_hours(), 6),
            "observations": cdf.observations,
            "prior_weight": cdf.prior_weight,
            "spread_values": [[round(float(v), 9) for v in s.values] for s in self.spread],
        }
        if self.shape is not None:
            out["shape"] = {
                "family": "lognormal",
                "median_hours": round(float(np.exp(self.shape.mu)), 6),
                "sigma": round(self.shape.sigma, 6),
            }
        return out


def fit_delay_model(
    success_delay_hours: ArrayLike,
    success_cohort_age_hours: ArrayLike,
    window_hours: float,
    *,
    weights: ArrayLike | None = None,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    earliest_hours: ArrayLike | None = None,
) -> DelayModel:
    """The delay CDF from right-truncated successes, on the log grid, with its sigma points.

    No knob: the grid runs from seconds to the window whatever the channel, and the tail's
    time scale is fitted, so push clicks, email clicks and conversions get the same code.
    ``earliest_hours`` (optional) is each success's left truncation: the shortest delay it
    could have been read with (a sample of the newest successes sees an old decision's
    success only if it came late). Left-truncated successes feed the shape fit, with their
    truncation in the likelihood; the nonparametric part uses the others only.
    """
    if not np.isfinite(prior_weight) or prior_weight <= 0:
        raise ValueError("prior_weight must be a positive finite number")
    raw_delays = np.asarray(success_delay_hours, dtype=np.float64)
    earliest = (
        np.zeros_like(raw_delays)
        if earliest_hours is None
        else np.asarray(earliest_hours, dtype=np.float64)
    )
    if earliest.shape != raw_delays.shape:
        raise ValueError("earliest_hours must have the shape of success_delay_hours")
    if not np.all(np.isfinite(earliest)) or np.any(earliest < 0):
        raise ValueError("earliest_hours must be finite and non-negative")
    delays, ages, counts = clean_observations(
        success_delay_hours, success_cohort_age_hours, window_hours, weights
    )
    earliest = earliest[raw_delays <= window_hours] if raw_delays.ndim == 1 else earliest
    if np.any(earliest > delays + 1e-9):
        raise ValueError("a success cannot be earlier than its left truncation")
    edges = delay_grid(window_hours)
    shape = fit_lognormal(delays, ages, counts, earliest)
    whole = earliest <= 0
    events, at_risk = reverse_risk_sets(delays[whole], ages[whole], counts[whole], edges)

    def cdf_for(mu: float, sigma: float) -> DelayCDF:
        base = window_cdf(edges, window_hours, mu, sigma)
        values = reverse_hazard_cdf(events, at_risk, base, prior_weight)
        return DelayCDF(
            window_hours=float(window_hours),
            edges_hours=edges,
            values=values,
            observations=float(counts.sum()),
            prior_weight=float(prior_weight),
        )

    spread = tuple(cdf_for(mu, sigma) for mu, sigma in shape.points())
    # The central curve is the mixture of the sigma-point curves (the unscented estimate of
    # the posterior predictive CDF), not the curve at the best-fitting parameters: when the
    # data cannot pin the tail (a few clicks ten minutes into an email send), F at the best
    # fit can be many times too small, and the rate divided by it absurdly large. Averaging
    # F over the fit's uncertainty keeps the correction to what the data can support.
    central = DelayCDF(
        window_hours=float(window_hours),
        edges_hours=edges,
        values=np.maximum.accumulate(np.mean([c.values for c in spread], axis=0)),
        observations=float(counts.sum()),
        prior_weight=float(prior_weight),
    )
    return DelayModel(central, spread, shape)


@dataclass(frozen=True, eq=False)
class CorrectedEvidence:
    """Per arm (leading axes of the input): what the posterior is built on, and the maturity.

    ``successes``/``exposures`` are the Beta posterior's counts: the effective exposures
    sum(n_c F(age_c)) and the successes, both shrunk by ``certainty`` (in (0, 1]) so that the
    Beta's variance also carries the uncertainty of F. ``maturity`` is the share of the eventual
    (in-window) evidence that has arrived, with its range over the fit's sigma points.
    """

    successes: FloatArray
    exposures: FloatArray
    maturity: FloatArray
    maturity_low: FloatArray
    maturity_high: FloatArray
    certainty: FloatArray
    # Unshrunk: the successes seen and sum(n_c F(age_c)), e.g. to centre a pooled prior
    # (shrunk counts would leave the prior's own pseudo-counts to set its centre).
    observed_successes: FloatArray
    effective_exposures: FloatArray


def corrected_evidence(
    successes_by_cohort: ArrayLike,
    exposures_by_cohort: ArrayLike,
    ages: ArrayLike,
    model: DelayModel | DelayCDF,
) -> CorrectedEvidence:
    """Delay-corrected evidence per arm from per-cohort counts (cohorts on the last axis).

    The corrected rate is successes / sum(n_c F(age_c)). Its uncertainty has two parts: the
    binomial one (the Beta's own) and that of F, which for young data is the larger. Rather
    than widen only the reported interval, the counts are shrunk by
    certainty = var_binomial / (var_binomial + var_F), so the Beta (and with it P(best), the
    expected loss and the allocation) is as unsure as the evidence: a young arm's lead moves
    traffic only as far as the delay model can vouch for it. var_F is the spread of the rate
    over the CDFs at the fit's sigma points.

    No estimate implies more successes than exposures: effective exposures never fall below
    the successes already seen (an F so small that they would is contradicted by the data).
    """
    delay = DelayModel.of(model)
    successes = np.asarray(successes_by_cohort, dtype=np.float64)
    exposures = np.asarray(exposures_by_cohort, dtype=np.float64)
    if successes.shape != exposures.shape or successes.ndim == 0:
        raise ValueError("successes_by_cohort and exposures_by_cohort must have one shape")
    if np.any(~np.isfinite(successes)) or np.any(successes < 0):
        raise ValueError("successes_by_cohort must be finite and non-negative")
    if np.any(~np.isfinite(exposures)) or np.any(exposures < 0):
        raise ValueError("exposures_by_cohort must be finite and non-negative")
    try:
        age_array = np.broadcast_to(np.asarray(ages, dtype=np.float64), exposures.shape)
    except ValueError as error:
        raise ValueError("ages must broadcast against the cohort counts") from error
    if np.any(~np.isfinite(age_array)):
        raise ValueError("ages must be finite")

    total_s = successes.sum(axis=-1)
    total_n = exposures.sum(axis=-1)
    effective = [
        np.maximum((exposures * cdf(age_array)).sum(axis=-1), total_s)
        for cdf in (delay.cdf, *delay.spread)
    ]
    central = effective[0]
    rate = (total_s + 0.5) / (central + 1.0)
    var_binomial = rate * (1.0 - rate) / (central + 1.0)
    if delay.spread:
        deviations = np.stack([(total_s + 0.5) / (e + 1.0) - rate for e in effective[1:]])
        var_delay = (deviations**2).mean(axis=0)
    else:
        var_delay = np.zeros_like(central)
    certainty = np.where(var_delay > 0, var_binomial / (var_binomial + var_delay), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = [np.where(total_n > 0, e / np.maximum(total_n, 1e-300), 1.0) for e in effective]
    maturity = np.clip(shares[0], 0.0, 1.0)
    stacked = np.clip(np.stack(shares), 0.0, 1.0)
    return CorrectedEvidence(
        successes=np.asarray(certainty * total_s, dtype=np.float64),
        exposures=np.asarray(certainty * central, dtype=np.float64),
        maturity=np.asarray(maturity, dtype=np.float64),
        maturity_low=np.asarray(stacked.min(axis=0), dtype=np.float64),
        maturity_high=np.asarray(stacked.max(axis=0), dtype=np.float64),
        certainty=np.asarray(certainty, dtype=np.float64),
        observed_successes=np.asarray(total_s, dtype=np.float64),
        effective_exposures=np.asarray(central, dtype=np.float64),
    )
