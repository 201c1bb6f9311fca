"""The decision math: posteriors, allocation and sampling over numpy arrays (no I/O)."""

from bandits.allocation import Allocation, NoEligibleArms, allocate, warming_up
from bandits.config import InvalidPolicyConfig, PolicyConfig
from bandits.posterior import BetaPosterior, beta_posterior, pooled_prior
from bandits.sampling import (
    PreparedSampler,
    arm_from_uniforms,
    sample_arms,
    uniforms_from_digest,
    uniforms_from_digests,
)

__all__ = [
    "Allocation",
    "BetaPosterior",
    "InvalidPolicyConfig",
    "NoEligibleArms",
    "PolicyConfig",
    "PreparedSampler",
    "allocate",
    "arm_from_uniforms",
    "beta_posterior",
    "pooled_prior",
    "sample_arms",
    "uniforms_from_digest",
    "uniforms_from_digests",
    "warming_up",
]
