"""The allocation: invariants, the warm-up floor, suspensions and seeded reference numbers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits import NoEligibleArms, PolicyConfig, allocate, warming_up

SEED = 20240601
CONFIG = PolicyConfig()


def _allocate(successes, exposures, *, config=CONFIG, seed=SEED, **kwargs):
    return allocate(
        successes=successes,
        exposures=exposures,
        config=config,
        rng=np.random.default_rng(seed),
        **kwargs,
    )


def test_seeded_reference_numbers() -> None:
    result = _allocate([120, 100, 90, 10], [3000, 3000, 3000, 200])

    np.testing.assert_array_equal(result.warming_up, [False, False, False, True])
    # Arm 3 is under the minimum sample but has its minimum successes: its own evidence (5%
    # against 4%) steers it, not the floor.
    np.testing.assert_allclose(result.exploit, [0.269, 0.0245, 0.001, 0.7055], atol=5e-6)
    np.testing.assert_allclose(result.allocation, [0.2671, 0.04705, 0.0259, 0.65995], atol=5e-6)
    np.testing.assert_allclose(result.probability_best, [0.269, 0.0245, 0.001, 0.7055])
    np.testing.assert_allclose(
        result.expected_loss, [0.011518, 0.018249, 0.021663, 0.002279], atol=5e-6
    )


def test_allocation_sums_to_one_with_the_exploration_share_on_every_arm() -> None:
    result = _allocate([120, 100, 90, 10, 0], [3000, 3000, 3000, 200, 0])

    assert result.allocation.sum() == pytest.approx(1.0, abs=1e-12)
    assert result.exploit.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(result.allocation >= CONFIG.exploration_share / 5 - 1e-15)
    np.testing.assert_allclose(
        result.allocation, 0.1 / 5 + 0.9 * result.exploit, rtol=0, atol=1e-15
    )


def test_clearly_better_arm_gets_most_of_the_allocation() -> None:
    result = _allocate([500, 200], [10_000, 10_000])

    assert result.allocation[0] > 0.85
    assert result.allocation[0] == pytest.approx(0.95)
    assert result.probability_best[0] == pytest.approx(1.0)
    assert result.expected_loss[0] == pytest.approx(0.0, abs=1e-6)
    assert result.expected_loss[1] == pytest.approx(0.03, abs=0.002)


def test_suspended_arms_get_exactly_nothing() -> None:
    suspended = np.array([False, True, False, False])
    result = _allocate([120, 150, 90, 100], [3000, 3000, 3000, 3000], suspended=suspended)

    for field in (result.allocation, result.exploit, result.probability_best):
        assert field[1] == 0.0
    np.testing.assert_array_equal(result.eligible, ~suspended)
    # K counts eligible arms only: three arms share the exploration share.
    assert np.all(result.allocation[~suspended] >= 0.1 / 3 - 1e-15)
    assert result.allocation.sum() == pytest.approx(1.0, abs=1e-12)
    # The suspended arm would win on the primary metric; its loss says so.
    assert result.expected_loss[1] < 0


def test_one_eligible_arm_gets_everything() -> None:
    result = _allocate([10, 50], [100, 1000], suspended=np.array([True, False]))

    np.testing.assert_array_equal(result.allocation, [0.0, 1.0])
    np.testing.assert_array_equal(result.exploit, [0.0, 1.0])


def test_a_single_arm_gets_everything() -> None:
    result = _allocate([0], [0])

    np.testing.assert_array_equal(result.allocation, [1.0])


def test_no_arms_or_all_suspended_raise() -> None:
    with pytest.raises(NoEligibleArms, match="no arms"):
        _allocate([], [])
    with pytest.raises(NoEligibleArms, match="suspended"):
        _allocate([1, 2], [10, 10], suspended=np.array([True, True]))
    assert issubclass(NoEligibleArms, ValueError)


def test_fresh_arm_does_not_reset_the_leader() -> None:
    before = _allocate([500, 200, 150], [10_000, 10_000, 10_000])
    after = _allocate([500, 200, 150, 0], [10_000, 10_000, 10_000, 0])

    floor = CONFIG.warmup_share
    assert after.exploit[3] == pytest.approx(floor)
    # The leader gives up exactly the room the floor needs, not its lead:
    # its vague-prior rival would have taken ~0.14 if P(best) steered it.
    assert after.exploit[0] == pytest.approx((1 - floor) * before.exploit[0], abs=0.01)
    assert after.allocation[0] > 0.8
    assert after.probability_best[3] > 0.1


def test_floor_only_for_arms_under_the_minimum_sample() -> None:
    # Arm 1 is mature and clearly losing: no floor. Arm 2 is fresh: its vague prior gives it
    # a P(best) above the floor, so it gets the floor and no more.
    result = _allocate([500, 200, 0], [10_000, 10_000, 0])

    np.testing.assert_array_equal(result.warming_up, [False, False, True])
    assert result.probability_best[2] > CONFIG.warmup_share
    assert result.exploit[1] < 0.01
    assert result.exploit[2] == pytest.approx(CONFIG.warmup_share)
    assert result.exploit[0] == pytest.approx(1 - CONFIG.warmup_share, abs=0.01)


def test_a_warming_arm_already_behind_gets_its_p_best_not_the_floor() -> None:
    # 0 clicks in 400 sends against a 5% leader (20 expected): still under the minimum sample,
    # but its own evidence gives it a P(best) far below the floor; the exploration share keeps
    # it sampled.
    result = _allocate([500, 0], [10_000, 400])

    assert result.warming_up[1]
    assert result.exploit[1] == pytest.approx(result.probability_best[1], abs=1e-12)
    assert result.exploit[1] < 0.01
    assert result.allocation[1] == pytest.approx(0.05 + 0.9 * result.exploit[1])


def test_floor_is_capped_at_one_over_k() -> None:
    config = PolicyConfig(warmup_share=0.6)
    result = _allocate([3, 0, 1], [50, 40, 20], config=config)

    lift = np.minimum(result.probability_best, 1 / 3)
    np.testing.assert_allclose(
        result.exploit, lift + (1 - lift.sum()) * result.probability_best, atol=1e-12
    )
    assert result.exploit.sum() == pytest.approx(1.0, abs=1e-12)


def test_before_any_arm_is_mature_the_exploit_follows_p_best_above_the_floors() -> None:
    # 300 sends each (2%, 3.3%, 5% observed) but no arm has its 500 exposures: no leader to
    # protect, so the evidence moves traffic from the start. Each arm is lifted by its floor
    # capped at its own P(best): the arms in the running get the whole floor, the one already
    # well behind (P(best) about 1%) is not paid a floor it would waste.
    result = _allocate([6, 10, 15], [300, 300, 300])

    assert result.warming_up.all()
    floor = CONFIG.warmup_share
    lift = np.minimum(result.probability_best, floor)
    np.testing.assert_allclose(lift[1:], floor)
    np.testing.assert_allclose(
        result.exploit, lift + (1 - lift.sum()) * result.probability_best, atol=1e-12
    )
    assert result.probability_best[0] < 0.02
    assert result.exploit[0] < 2 * result.probability_best[0] < floor / 2
    assert result.exploit[2] > 0.7 > result.exploit[1] > floor


def test_a_warming_arm_with_its_minimum_successes_is_not_capped_behind_a_mature_arm() -> None:
    # Email, hour 6 of a run: arm 1 reached the minimum sample first (1,017 sends, 13 clicks),
    # arm 2 is still under it (442 sends) but already has 14 clicks. Its P(best) rests on its
    # own evidence, not on a vague prior: capping it at the floor kept it at a tenth of the
    # traffic for hours while the mature, worse arm took the rest.
    result = _allocate([3, 13, 14], [341, 1017, 442])

    np.testing.assert_array_equal(result.warming_up, [True, False, True])
    assert result.probability_best[2] > 0.95
    assert result.exploit[2] > 0.9
    # Arm 0 (3 clicks) still leans on its prior: its P(best), capped at the floor.
    assert result.exploit[0] == pytest.approx(min(result.probability_best[0], 0.1), abs=1e-12)


def test_zero_warmup_share_leaves_warming_arms_the_exploration_share() -> None:
    result = _allocate([500, 0], [10_000, 0], config=PolicyConfig(warmup_share=0.0))

    np.testing.assert_allclose(result.allocation, [0.95, 0.05])


def test_gates_use_raw_counts() -> None:
    # Decay shrank the effective counts below the minimum; the raw ones are above it.
    result = _allocate(
        [30.0, 10.0], [300.0, 300.0], raw_successes=[100, 33], raw_exposures=[1000, 1000]
    )

    np.testing.assert_array_equal(result.warming_up, [False, False])


def test_minimum_successes_scale_with_the_pooled_rate() -> None:
    config = PolicyConfig(min_exposures=500, min_successes=5)

    # At a 5% pooled rate, 600 exposures should have brought ~30 successes:
    # an arm with none has been judged and leaves warm-up.
    busy = warming_up([0, 600, 600], [600, 10_000, 10_000], config)
    # At 0.5% the same 600 exposures are expected to bring 3: keep warming.
    quiet = warming_up([0, 60, 60], [600, 10_000, 10_000], config)
    # The minimum successes end warm-up once the exposures are there, not before.
    enough = warming_up([5, 100, 600], [500, 499, 10_000], config)

    np.testing.assert_array_equal(busy, [False, False, False])
    np.testing.assert_array_equal(quiet, [True, False, False])
    np.testing.assert_array_equal(enough, [False, True, False])


def test_posterior_summary_uses_the_pooled_prior() -> None:
    result = _allocate([500, 200], [10_000, 10_000])

    prior_alpha = 2.0 * 700.5 / 20_001
    expected_mean = (500 + prior_alpha) / (10_000 + 2.0)
    assert result.posterior_mean[0] == pytest.approx(expected_mean)
    assert np.all(result.ci_low < result.posterior_mean)
    assert np.all(result.posterior_mean < result.ci_high)
    np.testing.assert_allclose(result.ci_low, [0.045812, 0.017351], atol=5e-6)


def test_explicit_prior_is_used() -> None:
    result = _allocate([0, 0], [0, 0], prior_alpha=[1.0, 9.0], prior_beta=[9.0, 1.0])

    np.testing.assert_allclose(result.posterior_mean, [0.1, 0.9])


def test_same_seed_same_allocation() -> None:
    first = _allocate([120, 100, 90], [3000, 3000, 3000], seed=7)
    second = _allocate([120, 100, 90], [3000, 3000, 3000], seed=7)

    np.testing.assert_array_equal(first.allocation, second.allocation)


def test_result_arrays_are_read_only() -> None:
    result = _allocate([1, 2], [10, 10])

    with pytest.raises(ValueError, match="read-only"):
        result.allocation[0] = 1.0


@st.composite
def _arms(draw: st.DrawFn) -> tuple[list[float], list[float], list[bool]]:
    size = draw(st.integers(min_value=1, max_value=8))
    exposures = draw(
        st.lists(
            st.floats(min_value=0, max_value=20_000, allow_nan=False),
            min_size=size,
            max_size=size,
        )
    )
    rates = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
    suspended = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    suspended[draw(st.integers(0, size - 1))] = False
    return [n * r for n, r in zip(exposures, rates, strict=True)], exposures, suspended


@settings(max_examples=60, deadline=None)
@given(
    arms=_arms(),
    epsilon=st.floats(min_value=0, max_value=0.99),
    warmup_share=st.floats(min_value=0, max_value=0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_allocation_invariants(arms, epsilon, warmup_share, seed) -> None:
    successes, exposures, suspended_flags = arms
    suspended = np.array(suspended_flags)
    config = PolicyConfig(
        exploration_share=epsilon, warmup_share=warmup_share, draws=200, min_exposures=100
    )
    result = _allocate(successes, exposures, config=config, seed=seed, suspended=suspended)

    eligible = ~suspended
    n_eligible = int(eligible.sum())
    assert np.all((result.allocation >= 0) & (result.allocation <= 1))
    assert result.allocation.sum() == pytest.approx(1.0, abs=1e-9)
    assert result.exploit.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(result.allocation[suspended] == 0)
    assert np.all(result.exploit[suspended] == 0)
    assert np.all(result.allocation[eligible] >= epsilon / n_eligible - 1e-12)
    warming = eligible & result.warming_up
    floor = min(warmup_share, 1 / n_eligible)
    lift = np.minimum(result.probability_best, floor)
    if np.any(eligible & ~result.warming_up):
        # Behind a mature arm, an arm short of its minimum successes: P(best), capped at the
        # floor.
        vague = warming & (np.asarray(successes) < config.min_successes)
        np.testing.assert_allclose(result.exploit[vague], lift[vague], atol=1e-12)
    else:
        # No mature arm: P(best), lifted by the floor capped at P(best).
        np.testing.assert_allclose(
            result.exploit[eligible],
            (lift + (1 - lift.sum()) * result.probability_best)[eligible],
            atol=1e-9,
        )
