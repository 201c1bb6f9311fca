"""Turning an allocation into decisions: which arm, and whether it was exploration.

Called per request, so everything here is a handful of numpy calls on K-sized
arrays. The two uniforms of a decision are used the same way by the batch and
the keyed path, so a keyed decision lands on the arm a batch draw with the
same uniforms would have chosen, and P(arm a) is exactly
epsilon/K + (1 - epsilon) * exploit_a.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandits.posterior import BoolArray, FloatArray

IndexArray = npt.NDArray[np.int64]

_TWO_TO_MINUS_53 = 2.0**-53


def _exploit_cdf(exploit: FloatArray, eligible: BoolArray, exploration_share: float) -> FloatArray:
    """The exploit CDF over all arms, zero-width for ineligible arms, ending at exactly 1."""
    if not 0.0 <= exploration_share < 1.0:
        raise ValueError(f"exploration_share must be in [0, 1), got {exploration_share!r}")
    exploit, eligible = np.asarray(exploit), np.asarray(eligible)
    if exploit.ndim != 1 or exploit.shape != eligible.shape or eligible.dtype != np.bool_:
        raise ValueError(
            f"exploit and eligible must be 1-d of one length (eligible bool), "
            f"got shapes {exploit.shape} and {eligible.shape}"
        )
    # Zero weight on ineligible arms whatever the caller passed: a suspended arm
    # must never be served, even from a stale or hand-built exploit vector.
    weights = exploit * eligible
    cdf = weights.cumsum()
    total = float(cdf[-1]) if cdf.shape[0] else 0.0
    if not (math.isfinite(total) and total > 0.0) or weights.min() < 0.0:
        raise ValueError("exploit must be non-negative with positive mass on an eligible arm")
    # Dividing by the last entry makes the CDF end at exactly 1.0, and the
    # trailing zero-weight arms share that value, so searchsorted(side="right")
    # of any u < 1 lands on an arm with weight: a zero-weight arm is never picked.
    cdf /= total
    return cdf


def sample_arms(
    exploit: FloatArray,
    eligible: BoolArray,
    exploration_share: float,
    n: int,
    rng: np.random.Generator,
) -> tuple[IndexArray, BoolArray]:
    """``n`` decisions at once: (arm indices, explored flags).

    With probability epsilon a decision explores and takes an eligible arm
    uniformly; otherwise it draws from ``exploit`` by inverse CDF.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    cdf = _exploit_cdf(exploit, eligible, exploration_share)
    uniforms = rng.random((2, n))
    return _arms_from_uniforms(
        cdf, np.flatnonzero(eligible), exploration_share, uniforms[0], uniforms[1]
    )


def _arms_from_uniforms(
    cdf: FloatArray,
    eligible_index: IndexArray,
    exploration_share: float,
    u_explore: FloatArray,
    u_arm: FloatArray,
) -> tuple[IndexArray, BoolArray]:
    """The decision rule over arrays of uniforms: a decision explores when its first
    uniform is under epsilon and takes an eligible arm uniformly by its second; otherwise
    the second is inverted through the exploit CDF."""
    explored = u_explore < exploration_share
    exploited_arm = np.searchsorted(cdf, u_arm, side="right")
    explored_arm = eligible_index[(u_arm * eligible_index.shape[0]).astype(np.int64)]
    arms = np.where(explored, explored_arm, exploited_arm).astype(np.int64, copy=False)
    return arms, explored


def arm_from_uniforms(
    exploit: FloatArray,
    eligible: BoolArray,
    exploration_share: float,
    u_explore: float,
    u_arm: float,
) -> tuple[int, bool]:
    """One decision from two given uniforms in [0, 1): (arm index, explored).

    For keyed decisions, whose uniforms come from an HMAC so every replica
    picks the same arm for the same (experiment, unit, send).
    """
    if not (0.0 <= u_explore < 1.0 and 0.0 <= u_arm < 1.0):
        raise ValueError("uniforms must be in [0, 1)")
    cdf = _exploit_cdf(exploit, eligible, exploration_share)
    if u_explore < exploration_share:
        eligible_index = np.flatnonzero(eligible)
        return int(eligible_index[int(u_arm * eligible_index.shape[0])]), True
    return int(cdf.searchsorted(u_arm, side="right")), False


def uniforms_from_digest(digest: bytes) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) from the first 16 bytes of a digest.

    Each takes the top 53 bits of an 8-byte word, the resolution of a double,
    so every value is exact and 1.0 is impossible.
    """
    if len(digest) < 16:
        raise ValueError(f"digest must have at least 16 bytes, got {len(digest)}")
    first = int.from_bytes(digest[0:8], "big") >> 11
    second = int.from_bytes(digest[8:16], "big") >> 11
    return first * _TWO_TO_MINUS_53, second * _TWO_TO_MINUS_53


def uniforms_from_digests(digests: bytes, size: int) -> tuple[FloatArray, FloatArray]:
    """``uniforms_from_digest`` of each ``size``-byte digest packed back to back in
    ``digests``, as two arrays: the same values (a 53-bit integer times 2**-53 is exact
    in a double either way)."""
    if size < 16 or len(digests) % size:
        raise ValueError(f"digests must be whole {size}-byte digests of at least 16 bytes")
    # The first two 8-byte words of each digest, read in place.
    words = np.ndarray((len(digests) // size, 2), dtype=">u8", buffer=digests, strides=(size, 8))
    top = (words >> np.uint64(11)).astype(np.float64) * _TWO_TO_MINUS_53
    return top[:, 0], top[:, 1]


@dataclass(frozen=True, slots=True)
class PreparedSampler:
    """One allocation made ready for many single decisions (one per request).

    The CDF and the eligible arms are computed once, when a snapshot is loaded; a decision
    is then two uniforms and a bisection over plain floats, the same rule as
    ``arm_from_uniforms`` (``bisect_right`` is ``searchsorted(side="right")``), without
    the numpy set-up that costs more than the draw for one unit.
    """

    cdf: tuple[float, ...]
    eligible_index: tuple[int, ...]
    exploration_share: float

    @classmethod
    def prepare(
        cls, exploit: FloatArray, eligible: BoolArray, exploration_share: float
    ) -> PreparedSampler:
        cdf = _exploit_cdf(exploit, eligible, exploration_share)
        index = np.flatnonzero(eligible)
        return cls(tuple(cdf.tolist()), tuple(index.tolist()), float(exploration_share))

    def from_uniforms(self, u_explore: float, u_arm: float) -> tuple[int, bool]:
        if u_explore < self.exploration_share:
            return self.eligible_index[int(u_arm * len(self.eligible_index))], True
        return bisect_right(self.cdf, u_arm), False

    def from_uniform_arrays(
        self, u_explore: FloatArray, u_arm: FloatArray
    ) -> tuple[IndexArray, BoolArray]:
        """``from_uniforms`` of each pair at once (a keyed batch): the same rule as
        ``sample_arms``, on the same CDF values."""
        return _arms_from_uniforms(
            np.array(self.cdf),
            np.array(self.eligible_index, dtype=np.int64),
            self.exploration_share,
            u_explore,
            u_arm,
        )
