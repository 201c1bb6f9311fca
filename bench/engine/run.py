"""Decisions per second: `bandits.sample_arms` against raw per-decision Thompson sampling.

Run: .venv/bin/python bench/engine/run.py [--n 10000] [--repeats 21]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from bandits import PolicyConfig, allocate, arm_from_uniforms, sample_arms


def _posterior_counts(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counts for k arms around a 3% rate, as a running experiment would have."""
    exposures = rng.integers(2_000, 20_000, size=k).astype(np.float64)
    successes = np.round(exposures * rng.uniform(0.02, 0.04, size=k))
    return successes, exposures


def _interleaved_medians(
    contenders: dict[str, Callable[[], object]], repeats: int
) -> dict[str, float]:
    """Median seconds per call, alternating contenders so drift hits them alike."""
    for call in contenders.values():  # warm caches and lazy imports
        call()
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, call in contenders.items():
            start = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in timings.items()}


def _rates(k: int, n: int, repeats: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Decisions/s for the batch sampler, raw Thompson sampling and the keyed path."""
    successes, exposures = _posterior_counts(k, rng)
    policy = allocate(successes=successes, exposures=exposures, config=PolicyConfig(), rng=rng)
    alpha, beta = 1.0 + successes, 1.0 + exposures - successes
    exploit, eligible, share = policy.exploit, policy.eligible, policy.exploration_share
    keyed_uniforms = rng.random((1_000, 2)).tolist()

    def batch() -> object:
        return sample_arms(exploit, eligible, share, n, rng)

    def thompson() -> object:
        return rng.beta(alpha, beta, size=(n, k)).argmax(axis=1)

    def keyed() -> object:
        return [arm_from_uniforms(exploit, eligible, share, u, v) for u, v in keyed_uniforms]

    seconds = _interleaved_medians({"batch": batch, "thompson": thompson, "keyed": keyed}, repeats)
    return n / seconds["batch"], n / seconds["thompson"], len(keyed_uniforms) / seconds["keyed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="decisions per call")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=2024)
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)

    print(f"n={arguments.n} decisions per call, median of {arguments.repeats} interleaved repeats")
    print(f"{'K':>3}  {'sample_arms/s':>14}  {'raw Thompson/s':>15}  {'ratio':>6}  {'keyed/s':>9}")
    for k in (5, 50):
        batch, thompson, keyed = _rates(k, arguments.n, arguments.repeats, rng)
        print(
            f"{k:>3}  {batch:>14,.0f}  {thompson:>15,.0f}  {batch / thompson:>6.1f}  {keyed:>9,.0f}"
        )


if __name__ == "__main__":
    main()
