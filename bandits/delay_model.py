"""The delay model the policy uses: the delay CDF learnt at the data's time scale, with its
uncertainty, and the delay-corrected evidence per arm that the posteriors are built on.

``fit_delay_model`` joins two estimates: below the oldest cohort's age the reverse
Kaplan-Meier of ``bandits.delay`` lets the observed delays speak for themselves; above it
(what is still to come) the hazard comes from a log-normal fitted to the same truncated delays
(``bandits.delay_shape``), whose pull fades as data arrive. The four sigma points of that fit
give four more CDFs, so every figure built on F carries the uncertainty of the extrapolation.

A second log-normal, fitted to the slowest tenth of the delays only, gives four more CDFs (the
``tail``). Where the delays are not one log-normal (a fast-and-slow mix, a heavy tail) the
whole fit extrapolates the fast bulk and says too little is still to come; the tail fit does
not. Whether the delays are such a mix is decided by evidence (``bandits.delay_mixture``: two
log-normals against one on the same truncated delays, by BIC); only then are the tail's CDFs
kept, and they widen only the *reported* interval and maturity range
(``CorrectedEvidence.reported_certainty``): the posteriors, P(best) and the allocation keep
only the part of the whole fit's doubt that differs between arms (``corrected_evidence``),
because an error in F is shared by every arm and cancels when arms exposed at the same ages
are compared, while shrinking every arm's counts by it slowed the policy (email regret
0.90 -> 1.09 of Thompson sampling's). (Before the test, the tail widened every young
log-normal send, 14 times the policy's width an hour into an email send.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from bandits.cohort_ages import cohort_cdf
from bandits.delay import (
    FIRST_EDGE_HOURS,
    GRID_RATIO,
    DelayCDF,
    FloatArray,
    clean_observations,
    delay_grid,
    reverse_hazard_cdf,
    reverse_risk_sets,
)
from bandits.delay_mixture import MixtureEvidence, mixture_evidence
from bandits.delay_shape import MIN_DELAY_HOURS, LogNormalShape, fit_lognormal, window_cdf
from bandits.delay_unseen import UnseenWave, unseen_wave
from bandits.posterior import beta_posterior

# Pseudo-successes behind the fitted shape in the nonparametric estimate: enough to steady the
# first few dozen delays, soon outweighed (the pull fades like 20 / (20 + successes)).
DEFAULT_PRIOR_WEIGHT = 20.0

# "Too early to judge": less than half of the eventual evidence has arrived, or the part that
# has (exposures x maturity) is still short of the minimum sample. The report labels such an
# arm, and the loop neither adds, confirms nor prunes a learning on its evidence.
MATURE_SHARE = 0.5
# The tail fit of ``_tail_shape``: the slowest tenth of the delays, if it holds at least ten
# successes. (On the coverage test's shapes the slowest half was too much of the bulk: a fast
# and slow mix read an hour in still covered its final rate in 3% of runs; a tenth, 88%.)
TAIL_QUANTILE = 0.9
MIN_TAIL_SUCCESSES = 10.0
TOO_EARLY = "too early to judge"
# The Poisson chance below which an arm's successes contradict the fitted F (``contradicted_rows``).
CONTRADICTION_P = 1e-3
# Points inside the grid's first bin (0 to 10 s), from about one second up, on the grid's own
# ratio: there F follows the fitted shape (see ``first_bin_profile``).
FIRST_BIN_POINTS_HOURS = FIRST_EDGE_HOURS / GRID_RATIO ** np.arange(10, 0, -1)
JUDGED = "judged"
# The reported maturity range's lower end allows for a slow wave the data cannot see yet
# (``bandits.delay_unseen``) at this quantile of its posterior.
UNSEEN_QUANTILE = 0.05


def too_early(maturity: float, exposures: float, min_exposures: float) -> bool:
    """Whether an arm's evidence is too young to judge (see ``MATURE_SHARE``)."""
    return bool(maturity < MATURE_SHARE or exposures * maturity < min_exposures)


@dataclass(frozen=True, eq=False)
class DelayModel:
    """The central delay CDF and the CDFs at the fit's sigma points (empty: no uncertainty).

    ``tail`` holds the CDFs at the sigma points of the fit to the slowest tenth of the delays,
    kept only when a second, slower component is real by ``evidence`` (empty otherwise):
    they widen the reported interval only (see the module docstring).
    """

    cdf: DelayCDF
    spread: tuple[DelayCDF, ...] = ()
    shape: LogNormalShape | None = None
    tail: tuple[DelayCDF, ...] = ()
    tail_shape: LogNormalShape | None = None
    evidence: MixtureEvidence | None = None
    # The slow wave the data cannot see yet (``bandits.delay_unseen``): reported figures only.
    unseen: UnseenWave | None = None

    @property
    def mixed(self) -> bool:
        """Whether the delays are a mix of a fast and a slow component by the evidence (two
        log-normals beat one by BIC), so the reported interval allows for the slow tail."""
        return bool(self.tail)

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
            "tail_values": [[round(float(v), 9) for v in s.values] for s in self.tail],
            "mixed": self.mixed,
        }
        if self.evidence is not None:
            out["mixture"] = self.evidence.to_json()
        if self.shape is not None:
            out["shape"] = {
                "family": "lognormal",
                "median_hours": round(float(np.exp(self.shape.mu)), 6),
                "sigma": round(self.shape.sigma, 6),
            }
        if self.tail_shape is not None:
            out["tail_shape"] = {
                "family": "lognormal",
                "median_hours": round(float(np.exp(self.tail_shape.mu)), 6),
                "sigma": round(self.tail_shape.sigma, 6),
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
    known_mixture: MixtureEvidence | None = None,
) -> DelayModel:
    """The delay CDF from right-truncated successes, on the log grid, with its sigma points.

    No knob: the grid runs from seconds to the window whatever the channel, and the tail's
    time scale is fitted, so push clicks, email clicks and conversions get the same code.
    ``earliest_hours`` (optional) is each success's left truncation: the shortest delay it
    could have been read with (a sample of the newest successes sees an old decision's
    success only if it came late). Left-truncated successes feed the shape fit, with their
    truncation in the likelihood; the nonparametric part uses the others only.
    ``known_mixture`` (optional): the mixture verdict of an earlier fit of the same delays,
    reused while it still holds (``MixtureEvidence.still_holds``) instead of rerunning it.
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

    fine_edges = np.concatenate(([0.0], _first_bin_points(edges), edges[1:]))

    def cdf_for(mu: float, sigma: float) -> DelayCDF:
        base = window_cdf(edges, window_hours, mu, sigma)
        values = reverse_hazard_cdf(events, at_risk, base, prior_weight)
        return DelayCDF(
            window_hours=float(window_hours),
            edges_hours=fine_edges,
            values=first_bin_profile(values, edges, mu, sigma),
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
        edges_hours=fine_edges,
        values=np.maximum.accumulate(np.mean([c.values for c in spread], axis=0)),
        observations=float(counts.sum()),
        prior_weight=float(prior_weight),
    )
    # The mixture test first: the tail is fitted only for delays found mixed.
    evidence = None
    if counts.sum() * (1.0 - TAIL_QUANTILE) >= MIN_TAIL_SUCCESSES:
        n_whole = float(counts[whole].sum())
        evidence = (
            known_mixture
            if known_mixture is not None and known_mixture.still_holds(n_whole)
            else mixture_evidence(delays[whole], ages[whole], counts[whole], shape)
        )
    unseen = unseen_wave(
        delays[whole], ages[whole], counts[whole], shape, window_hours, central.edges_hours
    )
    if evidence is None or not evidence.mixed:
        return DelayModel(central, spread, shape, evidence=evidence, unseen=unseen)
    tail_shape = _tail_shape(delays, ages, counts, earliest, shape)
    if tail_shape is None:
        return DelayModel(central, spread, shape, evidence=evidence, unseen=unseen)
    tail = tuple(cdf_for(m, s) for m, s in tail_shape.points())
    return DelayModel(central, spread, shape, tail, tail_shape, evidence, unseen)


def _first_bin_points(edges: FloatArray) -> FloatArray:
    return np.asarray(FIRST_BIN_POINTS_HOURS[FIRST_BIN_POINTS_HOURS < edges[1]], np.float64)


def first_bin_profile(values: FloatArray, edges: FloatArray, mu: float, sigma: float) -> FloatArray:
    """F on the grid with points inside its first bin, where F follows the fitted log-normal:
    F(a) = F(e1) G(a) / G(e1) for a below the first edge e1 (G the shape's CDF).

    No delay can inform the first bin's inside (a delay in a cohort's partial bin informs
    nothing), and a straight line from 0 to F(10 s) says a decision two seconds old has had a
    fifth of its chance when push clicks mostly come back within two seconds: read at once,
    the rates came out several times the observed ones, and the report's two maturities (the
    arms', the evaluation's) depended on the second at which each was read. Returns the values
    at ``[0, *first-bin points, *edges[1:]]``.
    """
    points = _first_bin_points(edges)
    log_first = special.log_ndtr((np.log(edges[1]) - mu) / sigma)
    ratio = np.exp(special.log_ndtr((np.log(points) - mu) / sigma) - log_first)
    inside = values[1] * np.minimum(ratio, 1.0)
    return np.asarray(
        np.maximum.accumulate(np.concatenate(([values[0]], inside, values[1:]))), np.float64
    )


def _tail_shape(
    delays: FloatArray,
    ages: FloatArray,
    counts: FloatArray,
    earliest: FloatArray,
    whole: LogNormalShape,
) -> LogNormalShape | None:
    """A log-normal fitted to the slowest tenth of the delays only (left-truncated where that
    tenth begins), or None when it is too thin to fit.

    One log-normal fitted to all delays extrapolates the bulk: for a mix of fast and slow
    delays (half the clicks in ten minutes, half over hours) read an hour in, it fits the fast
    bulk and says almost nothing is still to come, and the corrected rate is half the truth
    with a confident interval. What is still to come depends on the tail the data show near
    the oldest age, so a second fit reads only that tail. For log-normal delays both fits
    agree (the tail fit is just less sure).
    """
    if counts.sum() * (1.0 - TAIL_QUANTILE) < MIN_TAIL_SUCCESSES:
        return None
    # The cut on the fit's own 1% grid of log-delay: a bincount, not a sort.
    keys = np.rint(np.log(np.maximum(delays, MIN_DELAY_HOURS)) * 100.0).astype(np.int64)
    low = int(keys.min())
    cumulative = np.cumsum(np.bincount(keys - low, weights=counts))
    cut_key = int(np.searchsorted(cumulative, cumulative[-1] * TAIL_QUANTILE)) + low
    cut = float(np.exp((cut_key - 0.5) / 100.0))
    slow = delays >= cut
    if counts[slow].sum() < MIN_TAIL_SUCCESSES or cut <= 0:
        return None
    return fit_lognormal(
        delays[slow],
        ages[slow],
        counts[slow],
        np.maximum(earliest[slow], cut),
        start_at=(whole.mu, whole.sigma),
    )


@dataclass(frozen=True, eq=False)
class CorrectedEvidence:
    """Per arm (leading axes of the input): what the posterior is built on, and the maturity.

    ``successes``/``exposures`` are the Beta posterior's counts: the effective exposures
    sum(n_c F(age_c)) and the successes, both shrunk by ``certainty`` (in (0, 1]) so that the
    Beta's variance also carries the uncertainty of F. ``maturity`` is the share of the eventual
    (in-window) evidence that has arrived, with its range over the fit's sigma points and the
    tail fit's. ``reported_certainty`` (<= ``certainty``) is the shrink for the reported
    interval: it also allows for the tail fit's disagreement (see the module docstring).
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
    reported_certainty: FloatArray
    # Per arm: whether its row's fitted F was contradicted by the data (``contradicted_rows``)
    # and replaced by what the data allow; such an arm is too early to judge.
    contradicted: NDArray[np.bool_] | None = None
    # sum(n_c F(age_c)) under the fitted central curve, before any such replacement.
    fitted_exposures: FloatArray | None = None
    # The slow wave the data cannot see yet (``bandits.delay_unseen``) and, per component
    # (first axis), each arm's maturity under it: the reported upper end and maturity range.
    unseen: UnseenWave | None = None
    wave_maturity: FloatArray | None = None

    def unseen_maturity(self, quantile: float) -> FloatArray:
        """Per arm, the ``quantile`` of the maturity once a slow wave the data cannot see yet
        is allowed for (the central maturity where there is no such doubt)."""
        if self.unseen is None or self.wave_maturity is None:
            return self.maturity
        return self.unseen.maturity_low(self.maturity, self.wave_maturity, quantile)

    def reported_counts(self) -> tuple[FloatArray, FloatArray]:
        """(successes, exposures) of the reported interval's Beta: the unshrunk evidence
        shrunk by ``reported_certainty``."""
        c = self.reported_certainty
        return c * self.observed_successes, c * self.effective_exposures

    def tempered(
        self, prior_alpha: ArrayLike, prior_beta: ArrayLike, *, reported: bool = False
    ) -> Tempered:
        """The Beta posterior's counts and prior, all shrunk by one factor per arm: the
        certainty (``reported``: ``reported_certainty``), raised where needed so that the
        posterior is never vaguer than the prior alone.

        Shrinking the counts alone let the prior speak for them: read seconds after a push
        send, the delay fit's doubt put the certainty near 0.001, some 750 exposures an arm
        counted as one, and every arm's estimate fell onto the shared prior (2.6%, 5.9%,
        12.8% and 4.1% observed read 8.5%, 8.8%, 11.6% and 8.5%). The doubt in F is shared
        by every arm: shrinking prior and counts alike widens each Beta and leaves its mean
        where the arm's own evidence and the prior put it. The floor (the shrunk posterior
        holds at least the prior's own weight) keeps a Beta of a few hundredths of an
        observation from splitting into two spikes at 0 and 1.
        """
        c = self.reported_certainty if reported else self.certainty
        alpha = np.broadcast_to(np.asarray(prior_alpha, dtype=np.float64), c.shape)
        beta = np.broadcast_to(np.asarray(prior_beta, dtype=np.float64), c.shape)
        weight = alpha + beta
        scale = np.maximum(c, weight / (weight + self.effective_exposures))
        # Nor so far that a Beta with a success's worth of evidence gets a shape below one: its
        # median would fall orders of magnitude under its mean, and a leader with a few
        # conversions would lose most draws to an arm with none.
        scale = np.maximum(scale, np.minimum(1.0, 1.0 / (alpha + self.observed_successes)))
        return Tempered(
            successes=np.asarray(scale * self.observed_successes, dtype=np.float64),
            exposures=np.asarray(scale * self.effective_exposures, dtype=np.float64),
            prior_alpha=np.asarray(scale * alpha, dtype=np.float64),
            prior_beta=np.asarray(scale * beta, dtype=np.float64),
            scale=np.asarray(scale, dtype=np.float64),
        )

    def reported_interval(
        self, prior_alpha: ArrayLike, prior_beta: ArrayLike, level: float = 0.95
    ) -> tuple[FloatArray, FloatArray]:
        """The reported interval: the tempered posterior's (``tempered(reported=True)``),
        joined with that of the unshrunk prior plus the shrunk counts.

        While the certainty is small, a Beta cannot say both things the evidence says: the
        tempered one keeps each arm's contrast but, centred on a handful of early successes,
        puts its mass near that centre; the other is as vague as the prior when the delay
        model knows little (no success yet a minute into an email send: the final rate may be
        anything). The report shows both; as the certainty nears 1 they coincide.
        """
        own = self.tempered(prior_alpha, prior_beta, reported=True)
        low, high = beta_posterior(
            own.successes, own.exposures, own.prior_alpha, own.prior_beta
        ).credible_interval(level)
        s, e = self.reported_counts()
        vague_low, vague_high = beta_posterior(s, e, prior_alpha, prior_beta).credible_interval(
            level
        )
        high = np.maximum(high, vague_high)
        if self.unseen is not None:
            # A slow wave still to come (``unseen_maturity``) can only raise the rate: the
            # upper end is the binomial one on the exposures that wave leaves arrived.
            seen = self.observed_successes
            arrived = self.unseen_maturity((1.0 - level) / 2.0)
            share = np.where(self.maturity > 0, arrived / np.maximum(self.maturity, 1e-300), 1.0)
            exposures = np.maximum(self.effective_exposures * share, seen)
            _low, wave_high = beta_posterior(
                seen, exposures, prior_alpha, prior_beta
            ).credible_interval(level)
            high = np.maximum(high, wave_high)
        return np.minimum(low, vague_low), high


@dataclass(frozen=True, eq=False)
class Tempered:
    """A Beta posterior's evidence and prior shrunk by one factor per arm (``scale``):
    Beta(prior_alpha + successes, prior_beta + exposures - successes)."""

    successes: FloatArray
    exposures: FloatArray
    prior_alpha: FloatArray
    prior_beta: FloatArray
    scale: FloatArray


def _relative(curve: FloatArray, central: FloatArray) -> FloatArray:
    """One sigma point's effective exposures, rescaled per row (arms on the last axis) so
    that their sum over the arms is the central curve's: what is left is how the point moves
    one arm against the others."""
    total = curve.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(total > 0, central.sum(axis=-1, keepdims=True) / total, 1.0)
    return np.asarray(curve * factor, dtype=np.float64)


def corrected_evidence(
    successes_by_cohort: ArrayLike,
    exposures_by_cohort: ArrayLike,
    ages: ArrayLike,
    model: DelayModel | DelayCDF,
    *,
    age_spread: ArrayLike | None = None,
    pool_rows: bool = False,
) -> CorrectedEvidence:
    """Delay-corrected evidence per arm from per-cohort counts (cohorts on the last axis).

    ``pool_rows``: the counts are (rows, arms, cohorts), e.g. segments, and the evidence is
    one row of arms for all of them; a row whose fit is contradicted is replaced first (as
    below), so all traffic carries a contradicted segment's bounds, not the fit the segment
    contradicts. Where all of them together contradict the fit, that row is replaced as a
    whole, and ``contradicted`` says so for it alone.

    ``ages`` are each cohort's mean age, ``age_spread`` (optional, broadcast like ``ages``)
    the standard deviation of its decisions' ages: F of a cohort is then the mean of F over
    its ages (``bandits.cohort_ages.cohort_cdf``), not F at the mean age.

    The corrected rate is successes / sum(n_c F(age_c)). Its uncertainty has two parts: the
    binomial one (the Beta's own) and that of F, which for young data is the larger. Both
    shrink factors are var_binomial / (var_binomial + var_F), var_F the spread of the rate
    over the CDFs at the fit's sigma points, applied to prior and counts alike
    (``CorrectedEvidence.tempered``: the mean stays, the Beta widens):

    - ``reported_certainty`` takes the whole spread (and the tail fit's, when the delays are
      mixed): the reported interval says how unsure the rate itself is;
    - ``certainty``, the policy's, takes only the part that moves one arm against the others
      (``_relative``). F is shared: arms exposed at the same ages rise and fall together
      under every sigma point, and their comparison (P(best), the expected loss, the
      allocation) does not depend on it. Shrinking every arm by the whole spread pulled a
      young push send's arms onto the shared prior and slowed the policy where delays are
      long (conversions, 2 seeds: 174 regret against 199 with the whole spread); an arm
      younger than the others still moves traffic only as far as the model vouches for it.

    No estimate implies more successes than exposures: effective exposures never fall below
    the successes already seen. Where some arm's successes outnumber its effective exposures
    beyond chance, the fit itself is contradicted (``contradicted_rows``): that row's curves
    are replaced by what the data still allow, one F shared by its arms (``_uncontradicted``),
    and ``contradicted`` says so. Elsewhere nothing changes.
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
    try:
        spread = None if age_spread is None else np.broadcast_to(age_spread, exposures.shape)
    except ValueError as error:
        raise ValueError("age_spread must broadcast against the cohort counts") from error

    total_s = successes.sum(axis=-1)
    total_n = exposures.sum(axis=-1)
    curves = [
        (exposures * cohort_cdf(cdf, age_array, spread)).sum(axis=-1)
        for cdf in (delay.cdf, *delay.spread, *delay.tail)
    ]
    fitted = curves[0]
    contradicted = contradicted_rows(total_s, fitted)
    if pool_rows:
        if total_s.ndim != 2:
            raise ValueError("pool_rows needs (rows, arms, cohorts) counts")
        by_row = (
            _uncontradicted(curves, total_s, total_n, contradicted)
            if contradicted.any()
            else curves
        )
        curves = [c.sum(axis=0) for c in curves]
        total_s, total_n, fitted = total_s.sum(axis=0), total_n.sum(axis=0), fitted.sum(axis=0)
        contradicted = contradicted_rows(total_s, fitted)
        if not contradicted.any():
            curves = [c.sum(axis=0) for c in by_row]
    if contradicted.any():
        curves = _uncontradicted(curves, total_s, total_n, contradicted)
    effective = [
        np.maximum(curves[0], total_s),
        *(_shared_floor(curve, total_s, total_n) for curve in curves[1:]),
    ]
    central = effective[0]
    rate = (total_s + 0.5) / (central + 1.0)
    var_binomial = rate * (1.0 - rate) / (central + 1.0)

    def var_over(curves: list[FloatArray]) -> FloatArray:
        if not curves:
            return np.zeros_like(central)
        deviations = np.stack([(total_s + 0.5) / (e + 1.0) - rate for e in curves])
        return np.asarray((deviations**2).mean(axis=0), dtype=np.float64)

    # The policy's certainty reads only the part of F's doubt that differs between the arms:
    # each sigma point's curve is rescaled so that the arms' pooled effective exposures match
    # the central curve's. Arms exposed at the same ages then move together and their
    # contrast stays; an arm younger than the others (added later, or fed mostly lately)
    # keeps the doubt its own ages carry.
    var_delay = var_over([_relative(e, central) for e in effective[1 : 1 + len(delay.spread)]])
    # The reported interval pools all eight points, each measured from the central rate, so
    # the tail fit's disagreement with the whole fit (a bias the whole fit cannot see) counts.
    var_reported = var_over(effective[1:])
    certainty = np.where(var_delay > 0, var_binomial / (var_binomial + var_delay), 1.0)
    reported = np.where(var_reported > 0, var_binomial / (var_binomial + var_reported), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = [np.where(total_n > 0, e / np.maximum(total_n, 1e-300), 1.0) for e in effective]
    maturity = np.clip(shares[0], 0.0, 1.0)
    stacked = np.clip(np.stack(shares), 0.0, 1.0)
    low = stacked.min(axis=0)
    wave = None
    if delay.unseen is not None:
        wave = _wave_maturity(delay, exposures, age_array, spread, total_n, pool_rows=pool_rows)
        low = np.minimum(low, delay.unseen.maturity_low(maturity, wave, UNSEEN_QUANTILE))
    return CorrectedEvidence(
        successes=np.asarray(certainty * total_s, dtype=np.float64),
        exposures=np.asarray(certainty * central, dtype=np.float64),
        maturity=np.asarray(maturity, dtype=np.float64),
        maturity_low=np.asarray(low, dtype=np.float64),
        maturity_high=np.asarray(stacked.max(axis=0), dtype=np.float64),
        certainty=np.asarray(certainty, dtype=np.float64),
        observed_successes=np.asarray(total_s, dtype=np.float64),
        effective_exposures=np.asarray(central, dtype=np.float64),
        reported_certainty=np.asarray(np.minimum(reported, certainty), dtype=np.float64),
        contradicted=np.asarray(np.broadcast_to(contradicted, total_s.shape), dtype=bool),
        fitted_exposures=np.asarray(fitted, dtype=np.float64),
        unseen=delay.unseen,
        wave_maturity=wave,
    )


def _wave_maturity(
    delay: DelayModel,
    exposures: FloatArray,
    ages: FloatArray,
    spread: FloatArray | None,
    total_n: FloatArray,
    *,
    pool_rows: bool,
) -> FloatArray:
    """Per component of the unseen wave (first axis), each arm's share of its evidence
    arrived under that component alone."""
    assert delay.unseen is not None
    if spread is None or not np.any(spread):
        arrived = delay.unseen.arrived(exposures, ages)
    else:
        arrived = (
            delay.unseen.arrived(exposures, np.maximum(ages - spread, 0.0))
            + delay.unseen.arrived(exposures, ages + spread)
        ) / 2.0
    if pool_rows:
        arrived = arrived.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total_n > 0, arrived / np.maximum(total_n, 1e-300), 1.0)
    return np.clip(np.asarray(out, dtype=np.float64), 0.0, 1.0)


def contradicted_rows(successes: FloatArray, effective: FloatArray) -> NDArray[np.bool_]:
    """Per row of arms (arms on the last axis, reduced): whether the fitted F is contradicted
    by some arm's successes, kept with a trailing axis of one to broadcast over the arms.

    Even at a rate of 1 an arm expects only its effective exposures sum(n_c F(age_c)) of
    successes by now; seeing more is the data saying F is too small. A few more by chance
    is no contradiction (one click from an arm with 0.6 effective exposures), so the test is
    the Poisson chance of at least that many successes with that mean, below
    ``CONTRADICTION_P``.
    """
    excess = successes > effective
    with np.errstate(invalid="ignore", divide="ignore"):
        chance = special.gammainc(np.where(excess, successes, 1.0), np.maximum(effective, 0.0))
    arm = excess & (chance < CONTRADICTION_P)
    return np.asarray(arm.any(axis=-1, keepdims=True), dtype=bool)


def _shared_floor(curve: FloatArray, successes: FloatArray, exposures: FloatArray) -> FloatArray:
    """One sigma point's effective exposures, scaled (shared by the row's arms, capped at the
    exposures) until no arm's implied rate passes 1: a point whose F is too small for the
    leader says the same too-small F for every arm, not F clipped arm by arm (which gave
    each arm its own observed rate as the lowest maturity and a 2.5% arm the same upper end
    as a 12% one)."""
    # A point whose F is 0 at every age so far still has one F for all arms: a tiny F, in
    # proportion to the exposures, scaled like any other.
    curve = np.maximum(curve, 1e-12 * exposures)
    with np.errstate(invalid="ignore", divide="ignore"):
        need = np.where(successes > curve, successes / np.maximum(curve, 1e-300), 1.0)
    scale = np.max(need, axis=-1, keepdims=True)
    return np.asarray(np.maximum(np.minimum(curve * scale, exposures), successes), np.float64)


def _uncontradicted(
    curves: list[FloatArray],
    successes: FloatArray,
    exposures: FloatArray,
    contradicted: NDArray[np.bool_],
) -> list[FloatArray]:
    """The curves' effective exposures where the fit is contradicted (rows of
    ``contradicted``), replaced by what the data still allow between two bounds shared by
    the row's arms (so arms exposed at the same ages keep their contrast and one maturity):

    - ``least``: the fitted F scaled up until no arm's implied eventual rate passes 1 (the
      fit's own shape, at the smallest scale the data allow);
    - ``most``: nothing more to come (F = 1 at every age so far: the observed rates).

    The central curve is their geometric mean (F is a scale: the two bounds may be an order
    of magnitude apart), and the other curves alternate between the two bounds, so the
    reported interval spans what the data allow and the maturity range runs from one bound
    to the other. Read at the exact second of the last click of a push send (clicks 10 to
    12 s after it), the fit put every delay in the far left tail of a slow wave (median 2 h,
    F(12 s) about 1e-6): every arm read 99.97% with an interval of 99.97% to 100%, and each
    arm's maturity was its own observed rate.
    """
    central = curves[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.where(central > 0, successes / central, np.inf)
        scale = np.max(np.where(successes > 0, lift, 1.0), axis=-1, keepdims=True)
        least = np.where(np.isfinite(scale), np.minimum(central * scale, exposures), successes)
    least = np.maximum(least, successes)
    most = np.maximum(exposures, least)
    middle = np.sqrt(least * most)
    bounds = (least, most)
    return [
        np.where(contradicted, middle, central),
        *(np.where(contradicted, bounds[j % 2], c) for j, c in enumerate(curves[1:])),
    ]
