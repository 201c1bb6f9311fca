"""What the mixture test adds to a young experiment's delay fit, and what reusing its verdict
saves: the fit with the test run, with a stored verdict that still holds, and with no tail
(fewer than a tenth's worth of successes: the fit before the test, for scale).

Email-like delays (log-normal, median an hour) and a fast-and-slow mix, from sends spread over
two days, read at 60 h; rounds interleave the variants and the medians are compared.

Run: .venv/bin/python bench/delay/mixture_cost.py [--successes 2000 20000] [--rounds 15]
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bandits import delay_model  # noqa: E402
from bandits.delay_model import fit_delay_model  # noqa: E402

WINDOW = 168.0


def sample(rng: np.random.Generator, successes: int, mixed: bool) -> tuple[np.ndarray, ...]:
    n = successes * 3
    sent = rng.uniform(0.0, 48.0, n)
    if mixed:
        fast = rng.random(n) < 0.5
        delays = np.where(fast, rng.lognormal(np.log(1 / 6), 1.0, n), rng.lognormal(1.8, 1.0, n))
    else:
        delays = rng.lognormal(0.0, 1.2, n)
    age = 60.0 - sent
    seen = delays <= age
    return delays[seen][:successes], age[seen][:successes]


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def no_tail(delays: np.ndarray, ages: np.ndarray) -> None:
    """The fit without the tail (and so without the test): the fit before both, for scale."""
    saved = delay_model.MIN_TAIL_SUCCESSES
    delay_model.MIN_TAIL_SUCCESSES = float("inf")
    try:
        fit_delay_model(delays, ages, WINDOW)
    finally:
        delay_model.MIN_TAIL_SUCCESSES = saved


def measure(delays: np.ndarray, ages: np.ndarray, rounds: int) -> dict[str, float]:
    verdict = fit_delay_model(delays, ages, WINDOW).evidence
    assert verdict is not None
    variants: dict[str, Callable[[], object]] = {
        "test run": partial(fit_delay_model, delays, ages, WINDOW),
        "verdict reused": partial(fit_delay_model, delays, ages, WINDOW, known_mixture=verdict),
        "no tail": partial(no_tail, delays, ages),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            times[name].append(timed(call))
    return {name: statistics.median(t) for name, t in times.items()} | {
        "mixed": float(verdict.mixed)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--successes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    for n in args.successes:
        for mixed in (False, True):
            delays, ages = sample(rng, n, mixed)
            medians = measure(delays, ages, args.rounds)
            base = medians["no tail"]
            label = "mix" if mixed else "log-normal"
            figures = "  ".join(
                f"{name} {medians[name] * 1000:7.1f} ms ({medians[name] / base:4.2f}x)"
                for name in ("test run", "verdict reused", "no tail")
            )
            print(f"{n:>6} successes, {label:<10} mixed={bool(medians['mixed'])!s:<5} {figures}")


if __name__ == "__main__":
    main()
