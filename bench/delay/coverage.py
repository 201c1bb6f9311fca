"""Coverage of the reported 90% interval of a delay-corrected rate, and how often the delays
are called mixed, for log-normal, fast-and-slow mixed and heavy-tailed delays read from one
minute to the window (the cases of ``tests/bandits/test_delay_model.py``, plus push, all delays
within seconds, and email, log-normal with a median of an hour; 40 runs each, 5,000 exposures
at 5%). Also the policy's own interval's coverage and the reported width as a
multiple of the policy's (median). The policy's own posterior keeps only the part of the delay
model's doubt that differs between arms (``bandits.delay_model.corrected_evidence``): for the
single arm here, none, so its interval is the binomial one and covers young sends poorly by
design; the reported interval carries the whole doubt.

Run: .venv/bin/python bench/delay/coverage.py [lognormal mixture "heavy tail" push email]
    [--runs 40]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bandits.delay_model import Tempered, corrected_evidence, fit_delay_model  # noqa: E402

WINDOW = 168.0
RATE = 0.05
AGES = (1 / 60, 1 / 6, 1.0, 6.0, 24.0, WINDOW)


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    fast = rng.random(n) < 0.5
    return np.where(
        fast, rng.lognormal(np.log(10 / 60), 1.0, n), rng.lognormal(np.log(6.0), 1.0, n)
    )


SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "lognormal": lambda rng, n: rng.lognormal(0.0, 1.2, n),
    "mixture": _mixture,
    "heavy tail": lambda rng, n: 0.5 * rng.pareto(0.8, n),
    # All delays within seconds (median 3 s), as push and web clicks.
    "push": lambda rng, n: rng.lognormal(np.log(3 / 3600), 0.7, n),
    # Email clicks: log-normal, median one hour.
    "email": lambda rng, n: rng.lognormal(0.0, 1.0, n),
}


def interval(posterior: Tempered) -> tuple[float, float]:
    """The 90% interval of a Jeffreys prior and the counts, both shrunk by the delay model's
    doubt (``CorrectedEvidence.tempered``), as the service's posteriors are."""
    alpha = float(posterior.prior_alpha[0] + posterior.successes[0])
    beta = float(posterior.prior_beta[0] + posterior.exposures[0] - posterior.successes[0])
    low, high = stats.beta.ppf([0.05, 0.95], alpha, beta)
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    print(
        "| delays | age (h) | reported covers | policy's covers | called mixed | width x policy |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for shape in args.shapes:
        draw = SHAPES[shape]
        final = RATE * float(np.mean(draw(np.random.default_rng(99), 1_000_000) <= WINDOW))
        for age in AGES:
            rows = []
            for seed in range(args.runs):
                rng = np.random.default_rng([seed, int(age * 3600), 7])
                n = 5000
                sent = rng.uniform(0.0, min(age, 1 / 6), n) if age > 1 / 60 else 0.0
                delay = draw(rng, n)
                converts = (rng.random(n) < RATE) & (delay <= WINDOW)
                cohort_age = np.broadcast_to(age - sent, (n,))
                seen = converts & (delay <= cohort_age)
                model = fit_delay_model(delay[seen], cohort_age[seen], WINDOW)
                evidence = corrected_evidence(
                    seen.astype(float)[None], np.ones(n)[None], cohort_age[None], model
                )
                low, high = evidence.reported_interval(0.5, 0.5, level=0.90)
                reported = (float(low[0]), float(high[0]))
                policy = interval(evidence.tempered(0.5, 0.5))
                rows.append(
                    (
                        reported[0] <= final <= reported[1],
                        policy[0] <= final <= policy[1],
                        model.mixed,
                        (reported[1] - reported[0]) / (policy[1] - policy[0]),
                    )
                )
            table = np.array(rows, dtype=float)
            print(
                f"| {shape} | {age:.3g} | {table[:, 0].mean():.3f} | {table[:, 1].mean():.3f} "
                f"| {table[:, 2].mean():.2f} | {np.median(table[:, 3]):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
