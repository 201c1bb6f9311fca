"""Invalid inputs: configurations, counts, priors, allocations and uniforms are refused."""

import math

import numpy as np
import pytest

from bandits import (
    InvalidPolicyConfig,
    PolicyConfig,
    allocate,
    arm_from_uniforms,
    beta_posterior,
    pooled_prior,
    sample_arms,
    uniforms_from_digest,
)


def test_defaults_are_valid() -> None:
    config = PolicyConfig()

    assert config.exploration_share == 0.10
    assert (config.min_exposures, config.min_successes, config.draws) == (500, 5, 4000)
    assert 0 <= config.warmup_share < 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exploration_share", -0.01),
        ("exploration_share", 1.0),
        ("exploration_share", math.nan),
        ("exploration_share", math.inf),
        ("exploration_share", "0.1"),
        ("exploration_share", True),
        ("exploration_share", None),
        ("min_exposures", 0),
        ("min_exposures", -5),
        ("min_exposures", 500.0),
        ("min_exposures", True),
        ("min_successes", -1),
        ("min_successes", 5.5),
        ("min_successes", False),
        ("prior_strength", 0.0),
        ("prior_strength", -2.0),
        ("prior_strength", math.inf),
        ("prior_strength", math.nan),
        ("prior_strength", True),
        ("draws", 99),
        ("draws", 4000.0),
        ("draws", True),
        ("warmup_share", -0.1),
        ("warmup_share", 1.0),
        ("warmup_share", math.nan),
        ("warmup_share", False),
    ],
)
def test_invalid_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidPolicyConfig, match=f"^{field}: ") as raised:
        PolicyConfig(**{field: value})  # type: ignore[arg-type]

    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)


def test_numpy_scalars_are_accepted() -> None:
    config = PolicyConfig(exploration_share=np.float64(0.2), draws=np.int64(200))

    assert config.draws == 200


def test_config_is_immutable() -> None:
    config = PolicyConfig()

    with pytest.raises(AttributeError):
        config.draws = 10  # type: ignore[misc]


def _allocate(**overrides):
    arguments = {
        "successes": [10, 20],
        "exposures": [100, 200],
        "config": PolicyConfig(draws=100),
        "rng": np.random.default_rng(0),
    }
    arguments.update(overrides)
    return allocate(**arguments)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"successes": [1, 2, 3]}, "successes has 3 arms, expected 2"),
        ({"exposures": [[100, 200]]}, "exposures must be one-dimensional"),
        ({"successes": [-1, 2]}, "successes must be non-negative"),
        ({"exposures": [100, -200]}, "exposures must be non-negative"),
        ({"exposures": [100, math.nan]}, "exposures must be finite"),
        ({"successes": [math.inf, 2]}, "successes must be finite"),
        ({"raw_successes": [1, 2]}, "given together"),
        ({"raw_successes": [1, 2], "raw_exposures": [10]}, "raw_exposures has 1 arms"),
        ({"raw_successes": [-1, 2], "raw_exposures": [10, 10]}, "raw_successes must be non"),
        ({"prior_alpha": 1.0}, "given together"),
        ({"prior_alpha": 0.0, "prior_beta": 1.0}, "prior_alpha must be finite and > 0"),
        ({"prior_alpha": [1.0, 2.0, 3.0], "prior_beta": 1.0}, "prior_alpha must be a scalar"),
        ({"suspended": np.array([True])}, "suspended must be a bool array with 2 arms"),
        ({"suspended": np.array([0, 1])}, "suspended must be a bool array"),
    ],
)
def test_allocate_refuses_malformed_inputs(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _allocate(**overrides)


def test_posterior_refuses_bad_priors_and_counts() -> None:
    with pytest.raises(ValueError, match="prior_beta must be finite and > 0"):
        beta_posterior([1], [10], 1.0, -1.0)
    with pytest.raises(ValueError, match="successes has 1 arms, expected 2"):
        beta_posterior([1], [10, 10], 1.0, 1.0)
    with pytest.raises(ValueError, match="strength"):
        pooled_prior([1], [10], 0.0)
    with pytest.raises(ValueError, match="strength"):
        pooled_prior([1], [10], math.nan)


EXPLOIT = np.array([0.7, 0.3])
ELIGIBLE = np.array([True, True])


@pytest.mark.parametrize(
    ("exploit", "eligible", "share", "message"),
    [
        (EXPLOIT, np.array([True]), 0.1, "one length"),
        (EXPLOIT, np.array([1, 1]), 0.1, "eligible bool"),
        (EXPLOIT, ELIGIBLE, 1.0, "exploration_share"),
        (EXPLOIT, ELIGIBLE, -0.1, "exploration_share"),
        (EXPLOIT, np.array([False, False]), 0.1, "positive mass"),
        (np.array([0.0, 0.0]), ELIGIBLE, 0.1, "positive mass"),
        (np.array([1.5, -0.5]), ELIGIBLE, 0.1, "non-negative"),
        (np.array([math.nan, 1.0]), ELIGIBLE, 0.1, "positive mass"),
        (np.array([]), np.array([], dtype=bool), 0.1, "positive mass"),
    ],
)
def test_sampling_refuses_malformed_allocations(exploit, eligible, share, message) -> None:
    with pytest.raises(ValueError, match=message):
        sample_arms(exploit, eligible, share, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match=message):
        arm_from_uniforms(exploit, eligible, share, 0.5, 0.5)


def test_sampling_refuses_bad_sizes_and_uniforms() -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        sample_arms(EXPLOIT, ELIGIBLE, 0.1, -1, np.random.default_rng(0))
    for u_explore, u_arm in [(1.0, 0.5), (0.5, -0.1), (math.nan, 0.5)]:
        with pytest.raises(ValueError, match="uniforms must be in"):
            arm_from_uniforms(EXPLOIT, ELIGIBLE, 0.1, u_explore, u_arm)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        uniforms_from_digest(bytes(15))
