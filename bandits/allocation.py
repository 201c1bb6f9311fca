"""The allocation: pi_a = epsilon/K + (1 - epsilon) * exploit_a over the eligible arms.

Computed once per policy refresh from per-arm counts; ``/choose`` only samples
from the result (see ``bandits.sampling``), so the logged propensity is pi_a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandits.config import PolicyConfig
from bandits.posterior import (
    ArrayLike,
    BoolArray,
    FloatArray,
    as_counts,
    beta_posterior,
    pooled_prior,
    read_only,
    validate_counts,
)


class NoEligibleArms(ValueError):
    """Every arm is suspended (or there are none): there is no allocation to compute.

    The service falls back (control arm, or refuses) before calling ``allocate``.
    """


@dataclass(frozen=True, eq=False)
class Allocation:
    """One refresh's policy for one experiment and segment; read-only arrays, one entry per arm.

    ``probability_best`` and ``expected_loss`` compare each arm with the best
    *eligible* arm; a suspended arm keeps its figures (its expected loss may be
    negative if it would win on the primary metric) but gets no traffic.
    """

    allocation: FloatArray
    exploit: FloatArray
    exploration_share: float
    eligible: BoolArray
    probability_best: FloatArray
    expected_loss: FloatArray
    posterior_mean: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    warming_up: BoolArray


def warming_up(
    raw_successes: ArrayLike, raw_exposures: ArrayLike, config: PolicyConfig
) -> BoolArray:
    """Arms still under the minimum sample, judged on raw (undecayed) counts.

    An arm needs ``min_exposures``, and ``min_successes`` unless it has already
    had the traffic in which an arm at the pooled rate would have earned them:
    an arm with no clicks after that much traffic has been judged (it is
    losing), and keeping it in warm-up would pay a dud its floor forever.
    """
    successes, exposures = validate_counts(raw_successes, raw_exposures)
    total = float(exposures.sum())
    pooled_rate = float(successes.sum()) / total if total > 0 else 0.0
    short_of_exposures = exposures < config.min_exposures
    short_of_successes = (successes < config.min_successes) & (
        exposures * pooled_rate < config.min_successes
    )
    return np.asarray(short_of_exposures | short_of_successes, dtype=np.bool_)


def _eligibility(suspended: ArrayLike | None, size: int) -> BoolArray:
    if suspended is None:
        return np.ones(size, dtype=np.bool_)
    flags = np.asarray(suspended)
    if flags.dtype != np.bool_ or flags.shape != (size,):
        raise ValueError(
            f"suspended must be a bool array with {size} arms, "
            f"got dtype {flags.dtype} and shape {flags.shape}"
        )
    return np.asarray(~flags, dtype=np.bool_)


def _exchangeable(alpha: FloatArray, beta: FloatArray) -> bool:
    return bool(np.all(alpha == alpha[0]) and np.all(beta == beta[0]))


def _share_of_best(theta: FloatArray) -> FloatArray:
    """Fraction of Monte Carlo draws (rows) in which each column is the largest."""
    counts = np.bincount(theta.argmax(axis=1), minlength=theta.shape[1])
    return np.asarray(counts / theta.shape[0], dtype=np.float64)


def allocate(
    *,
    successes: ArrayLike,
    exposures: ArrayLike,
    config: PolicyConfig,
    rng: np.random.Generator,
    suspended: ArrayLike | None = None,
    prior_alpha: ArrayLike | None = None,
    prior_beta: ArrayLike | None = None,
    raw_successes: ArrayLike | None = None,
    raw_exposures: ArrayLike | None = None,
) -> Allocation:
    """The allocation for one experiment and segment (DESIGN.md, "The policy").

    ``successes``/``exposures`` feed the posteriors and may be effective
    (delay-corrected, decayed) floats; ``raw_*`` (default: the same) feed the
    minimum-sample gate so it does not flap as evidence decays. The prior
    defaults to ``pooled_prior`` over all arms. Raises ``NoEligibleArms`` when
    no arm can be served and ``ValueError`` for malformed counts.
    """
    successes_array, exposures_array = validate_counts(successes, exposures)
    size = exposures_array.shape[0]
    if (raw_successes is None) != (raw_exposures is None):
        raise ValueError("raw_successes and raw_exposures must be given together")
    if raw_successes is None or raw_exposures is None:
        raw_successes, raw_exposures = successes_array, exposures_array
    else:
        raw_exposures = as_counts("raw_exposures", raw_exposures, size=size)
        raw_successes = as_counts("raw_successes", raw_successes, size=size)
    if (prior_alpha is None) != (prior_beta is None):
        raise ValueError("prior_alpha and prior_beta must be given together")
    if prior_alpha is None or prior_beta is None:
        prior_alpha, prior_beta = pooled_prior(
            successes_array, exposures_array, config.prior_strength
        )
    eligible = _eligibility(suspended, size)
    if size == 0:
        raise NoEligibleArms("no arms to allocate")
    eligible_index = np.flatnonzero(eligible)
    n_eligible = eligible_index.shape[0]
    if n_eligible == 0:
        raise NoEligibleArms("every arm is suspended")

    posterior = beta_posterior(successes_array, exposures_array, prior_alpha, prior_beta)
    warming = warming_up(raw_successes, raw_exposures, config)

    # One block of draws serves every figure: P(best) and expected loss among
    # the eligible arms, and P(best) among the mature arms for the exploit.
    theta = rng.beta(posterior.alpha, posterior.beta, size=(config.draws, size))
    eligible_theta = theta[:, eligible_index]
    best_among_eligible = _share_of_best(eligible_theta)
    if _exchangeable(posterior.alpha[eligible_index], posterior.beta[eligible_index]):
        # Identical posteriors (no evidence yet): every arm is best with probability exactly
        # 1/K; the draws would only add noise to a fresh experiment's propensities.
        best_among_eligible = np.full(n_eligible, 1.0 / n_eligible)
    probability_best = np.zeros(size)
    probability_best[eligible_index] = best_among_eligible
    expected_loss = (eligible_theta.max(axis=1)[:, None] - theta).mean(axis=0)

    # Why a warm-up floor. Thompson sampling starves arms early: an arm with a
    # couple of unlucky exposures against a leader with thousands has P(best)
    # near zero, so it seldom gets the exposures that would prove it wrong; the
    # exploration share alone gives it epsilon/K (about 1% of traffic at K=8).
    # The opposite failure hurts as much: a fresh arm's vague prior puts real
    # mass above the leader's rate, so letting its P(best) steer traffic would
    # hand it a large share on no evidence and knock the leader back every time
    # the loop adds an arm.
    #
    # Before any arm is mature there is no leader to protect, and holding the
    # exploit even until the first arm reaches the minimum sample (hours of
    # push, a day of email) pays the even split's regret for all of it. So the
    # exploit follows P(best) among all arms, from the delay-corrected
    # posteriors (a young arm's lead moves traffic only as far as the delay
    # model can vouch for it), and each arm is lifted by its floor: the floor,
    # capped at the arm's own P(best), the lift paid for in proportion to P(best).
    #
    # Once some arm is mature, an arm still leaning on its prior (under the
    # minimum sample and short of the minimum successes) gets its P(best) among
    # all eligible arms, capped at the floor, and the others split the rest by
    # P(best) among themselves. The cap is what protects the leader: a fresh arm
    # (whose vague prior gives it a P(best) above the floor) gets exactly the
    # floor, so adding an arm shrinks the others by the room the floor needs and
    # a leader stays the leader. An arm under the minimum sample that already
    # has the minimum successes is judged on its own evidence like a mature one:
    # capping it kept a clearly better arm at the floor for hours while an arm
    # that had happened to reach the minimum sample first took the rest.
    #
    # In both phases the floor is capped at the arm's P(best): below it the
    # arm's own evidence speaks, and one already well behind is not paid a floor
    # it would waste (on push traffic that floor cost more than the whole gap to
    # plain Thompson sampling, on email a tenth of the exploit's regret). The
    # exploration share keeps every arm sampled, and the minimum sample still
    # governs retirement, eligibility and what the loop may read, so nothing is
    # judged on noise. The floor is capped at 1/K so the floors never exceed the
    # whole. (DESIGN.md: "arms still under the minimum sample get a warm-up
    # floor inside pi"; a floor capped at P(best) is a departure, made for the
    # regret on realistic clocks, ``bench/regret/README.md``.)
    floor = min(config.warmup_share, 1.0 / n_eligible)
    exploit = np.zeros(size)
    if not np.any(eligible & ~warming):
        lift = np.minimum(best_among_eligible, floor)
        exploit[eligible_index] = lift + (1.0 - float(lift.sum())) * best_among_eligible
    else:
        vague = eligible & warming & (raw_successes < config.min_successes)
        vague_index = np.flatnonzero(vague)
        judged_index = np.flatnonzero(eligible & ~vague)
        vague_best = best_among_eligible[np.searchsorted(eligible_index, vague_index)]
        exploit[vague_index] = np.minimum(vague_best, floor)
        judged_share = 1.0 - float(exploit[vague_index].sum())
        exploit[judged_index] = judged_share * _share_of_best(theta[:, judged_index])

    epsilon = config.exploration_share
    allocation = (1.0 - epsilon) * exploit
    allocation[eligible_index] += epsilon / n_eligible
    ci_low, ci_high = posterior.credible_interval(0.95)
    return Allocation(
        allocation=read_only(allocation),
        exploit=read_only(exploit),
        exploration_share=epsilon,
        eligible=read_only(eligible),
        probability_best=read_only(probability_best),
        expected_loss=read_only(np.asarray(expected_loss, dtype=np.float64)),
        posterior_mean=read_only(posterior.mean),
        ci_low=read_only(ci_low),
        ci_high=read_only(ci_high),
        warming_up=read_only(warming),
    )
