"""What the delay fit costs per young experiment: the fit now against last round's, same data.

Last round's fit (kept here as the baseline, not in the product): delays grouped by sorting,
one log-normal by BFGS on a numerical gradient, its Laplace Hessian from sixteen values. The
fit now: delays counted into their 1% bins, the same log-normal by BFGS on the analytic
gradient, stopped at a tolerance sized to the counts, the Hessian from four gradients. Both
build the four reverse Kaplan-Meier curves at the fit's sigma points.

Email-like delays (log-normal, median an hour) from sends spread over two days, read at 60 h;
rounds interleave the two fits and the medians are compared.

Run: .venv/bin/python bench/refresh/fit.py [--successes 2000 20000] [--rounds 15]
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import optimize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bandits import delay_shape  # noqa: E402
from bandits.delay import (  # noqa: E402
    clean_observations,
    delay_grid,
    reverse_hazard_cdf,
    reverse_risk_sets,  # noqa: E402
)
from bandits.delay_model import fit_delay_model  # noqa: E402

WINDOW = 168.0


def _previous_round_fit(delays: np.ndarray, ages: np.ndarray) -> list[np.ndarray]:
    """Last round's fit: numerical-gradient BFGS, a 16-value Hessian, four curves."""
    delays, ages, counts = clean_observations(delays, ages, WINDOW, None)

    # Last round's grouping: sorted unique keys (no pairs: nothing is left-truncated here).
    def grouped(log_values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique, inverse = np.unique(np.round(log_values * 100.0), return_inverse=True)
        return unique / 100.0, np.bincount(inverse.ravel(), weights=weights)

    floor = np.maximum(delays, delay_shape.MIN_DELAY_HOURS)
    log_d, w_d = grouped(np.log(floor), counts)
    log_t, w_t = grouped(np.log(np.maximum(ages, floor)), counts)
    empty = np.zeros(0)
    data = delay_shape._Observations(log_d, w_d, log_t, w_t, empty, empty, empty)
    mean = float(np.average(data.log_delays, weights=data.delay_weights))
    spread = float(np.sqrt(np.average((data.log_delays - mean) ** 2, weights=data.delay_weights)))
    start = np.array([mean, np.log(np.clip(spread, 0.3, 4.0))])
    result = optimize.minimize(
        delay_shape._negative_log_posterior, start, args=(data,), method="BFGS"
    )
    theta = np.asarray(result.x, dtype=np.float64)
    step = 1e-3
    hess = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * step, np.eye(2)[j] * step
            hess[i, j] = (
                delay_shape._negative_log_posterior(theta + e_i + e_j, data)
                - delay_shape._negative_log_posterior(theta + e_i - e_j, data)
                - delay_shape._negative_log_posterior(theta - e_i + e_j, data)
                + delay_shape._negative_log_posterior(theta - e_i - e_j, data)
            ) / (4 * step * step)
    cov = np.linalg.inv(hess) + np.diag([1e-4, 1e-4])
    shape = delay_shape.LogNormalShape(
        float(theta[0]),
        float(np.exp(theta[1])),
        ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        float(counts.sum()),
    )
    edges = delay_grid(WINDOW)
    events, at_risk = reverse_risk_sets(delays, ages, counts, edges)
    return [
        reverse_hazard_cdf(events, at_risk, delay_shape.window_cdf(edges, WINDOW, mu, sigma), 20.0)
        for mu, sigma in shape.points()
    ]


def _data(successes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sent = rng.uniform(0.0, 48.0, successes * 3)
    delay = rng.lognormal(0.0, 1.2, sent.size)
    age = 60.0 - sent
    seen = delay <= age
    return delay[seen][:successes], age[seen][:successes]


def _time(fit: Callable[[], object]) -> float:
    started = time.perf_counter()
    fit()
    return (time.perf_counter() - started) * 1000.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--successes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    print("| successes | previous round ms | now ms | now / previous |")
    print("| ---: | ---: | ---: | ---: |")
    for size in args.successes:
        delays, ages = _data(size, size)
        previous, now = [], []
        for _ in range(args.rounds):
            previous.append(_time(partial(_previous_round_fit, delays, ages)))
            now.append(_time(partial(fit_delay_model, delays, ages, WINDOW)))
        before, after = statistics.median(previous), statistics.median(now)
        print(f"| {size} | {before:.2f} | {after:.2f} | {after / before:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
