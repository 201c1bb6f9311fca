"""Regret benchmark: every pinned scenario, common random numbers across policies, 20 seeds.

Prints, per scenario and policy, the mean and 90th-percentile regret, the same as ratios to
the uniform run on the same audience (per seed, then mean and 90th percentile of the ratio),
the share of decisions to the best arm and the successes gained over the even split; then
checks the aims of issue 6 and prints each verdict (nothing is asserted: misses are findings).

Run: .venv/bin/python bench/regret/run.py [--seeds 20] [--hours H] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from simulation.audience import pinned_scenarios  # noqa: E402
from simulation.regret import RunResult, SimulationSettings, run  # noqa: E402
from simulation.regret.policies import experiment_info  # noqa: E402
from simulation.regret.summary import (  # noqa: E402
    format_table,
    plot,
    policies_for,
    summarise,
)

STATIONARY = ("stationary", "stationary_many")
WITHIN_OF_THOMPSON = 1.5
CLEARLY_BETTER = 0.8  # ours / Thompson on the mean, and ours ahead in 80% of seeds


def _task(job: tuple[str, str, int, SimulationSettings]) -> RunResult:
    name, policy, seed, settings = job
    return run(pinned_scenarios()[name], policy, seed, settings)


def run_all(
    scenarios: Sequence[str], seeds: int, settings: SimulationSettings, workers: int
) -> list[RunResult]:
    catalogue = pinned_scenarios()
    jobs = [
        (name, policy, seed, settings)
        for name in scenarios
        for seed in range(seeds)
        for policy in policies_for(catalogue[name])
    ]
    # The slowest runs first, so the pool does not finish on one long straggler.
    jobs.sort(key=lambda j: (j[1] not in ("ours", "ours-naive"), j[0] != "conversions"))
    if workers <= 1:
        results = [_task(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_task, jobs, chunksize=1))
    ranked = {name: i for i, name in enumerate(scenarios)}
    return sorted(
        results,
        key=lambda r: (
            ranked[r.scenario],
            policies_for(catalogue[r.scenario]).index(r.policy),
            r.seed,
        ),
    )


def _regrets(results: Sequence[RunResult], scenario: str, policy: str) -> dict[int, float]:
    return {r.seed: r.regret for r in results if r.scenario == scenario and r.policy == policy}


def _compare(
    results: Sequence[RunResult], scenario: str, ours: str, other: str
) -> tuple[float, float, float, float] | None:
    """Mean regrets of both, their ratio, and the share of seeds where ``ours`` did better."""
    mine, theirs = _regrets(results, scenario, ours), _regrets(results, scenario, other)
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        return None
    a = np.array([mine[s] for s in seeds])
    b = np.array([theirs[s] for s in seeds])
    ratio = float(a.mean() / b.mean()) if b.mean() > 0 else float("inf")
    return float(a.mean()), float(b.mean()), ratio, float(np.mean(a < b))


def _verdict(ok: bool) -> str:
    return "MET   " if ok else "MISSED"


def check_aims(results: Sequence[RunResult], settings: SimulationSettings) -> list[str]:
    lines = ["aims (issue 6), our default policy:"]
    present = {r.scenario for r in results}
    for scenario in STATIONARY:
        if scenario not in present:
            continue
        eps = _compare(results, scenario, "ours", "epsilon-greedy")
        ts = _compare(results, scenario, "ours", "thompson")
        if eps is None or ts is None:
            continue
        lines.append(
            f"  [{_verdict(eps[2] < 1.0)}] {scenario}: better than epsilon-greedy on the mean: "
            f"{eps[0]:.1f} vs {eps[1]:.1f} (ratio {eps[2]:.2f}, ahead in {eps[3]:.0%} of seeds)"
        )
        lines.append(
            f"  [{_verdict(ts[2] <= WITHIN_OF_THOMPSON)}] {scenario}: within "
            f"{WITHIN_OF_THOMPSON}x of pure Thompson on the mean: {ts[0]:.1f} vs {ts[1]:.1f} "
            f"(ratio {ts[2]:.2f})"
        )
    swap = _compare(results, "best_arm_swap", "ours", "thompson")
    if swap is not None:
        ok = swap[2] <= CLEARLY_BETTER and swap[3] >= 0.8
        lines.append(
            f"  [{_verdict(ok)}] best_arm_swap: clearly better than pure Thompson "
            f"(ratio <= {CLEARLY_BETTER}, ahead in >= 80% of seeds): {swap[0]:.1f} vs "
            f"{swap[1]:.1f} (ratio {swap[2]:.2f}, ahead in {swap[3]:.0%} of seeds)"
        )
    trap = [r for r in results if r.scenario == "guardrail_trap" and r.policy == "ours"]
    if trap:
        scenario = pinned_scenarios()["guardrail_trap"]
        minimum = experiment_info(scenario).min_exposures
        # The most one refresh can serve the arm: every send of one refresh interval.
        bound = minimum + scenario.sends_per_hour * settings.refresh_hours
        events = [r.suspended.get("arm-3") for r in trap]
        found = [e for e in events if e is not None]
        within = sum(1 for e in found if e[1] <= bound)
        detail = "never suspended"
        if found:
            exposures = np.array([e[1] for e in found])
            hours = np.array([e[0] for e in found])
            detail = (
                f"suspended in {len(found)}/{len(trap)} runs, at {np.median(exposures):.0f} "
                f"exposures (median; {exposures.min():.0f}-{exposures.max():.0f}), hour "
                f"{np.median(hours):.0f} (median; {hours.min():.0f}-{hours.max():.0f})"
            )
        lines.append(
            f"  [{_verdict(within == len(trap))}] guardrail_trap: arm-3 suspended within its "
            f"minimum sample plus one refresh (<= {bound:.0f} exposures) in {within}/{len(trap)} "
            f"runs; {detail}"
        )
    for scenario in ("arms_added_midrun", "conversions"):
        delay = _compare(results, scenario, "ours", "ours-naive")
        if delay is None:
            continue
        label = "arms added mid-run" if scenario == "arms_added_midrun" else "long delays"
        lines.append(
            f"  [{_verdict(delay[2] < 1.0)}] {scenario}: delay correction beats the naive "
            f"posterior ({label}): {delay[0]:.1f} vs {delay[1]:.1f} (ratio {delay[2]:.2f}, "
            f"ahead in {delay[3]:.0%} of seeds)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--hours", type=float, default=None, help="default: each horizon")
    parser.add_argument("--refresh-hours", type=float, default=1.0)
    parser.add_argument("--scenarios", nargs="+", default=None, help="default: all pinned")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=None, help="write the PNG plots here")
    args = parser.parse_args(argv)
    scenarios = args.scenarios or list(pinned_scenarios())
    settings = SimulationSettings(refresh_hours=args.refresh_hours, hours=args.hours)
    started = time.perf_counter()
    results = run_all(scenarios, args.seeds, settings, args.workers)
    horizon = f"{args.hours:g} h" if args.hours else "each scenario's horizon"
    print(
        f"regret benchmark: {args.seeds} seeds, {horizon}, refresh every "
        f"{args.refresh_hours:g} h, {len(results)} runs in {time.perf_counter() - started:.0f} s"
    )
    print(
        "regret = expected successes lost against the best acceptable arm; /unif and p90/u = "
        "per-seed regret over the uniform run's (same audience), mean and 90th percentile\n"
    )
    print(format_table(summarise(results)))
    print("\n".join(check_aims(results, settings)))
    if args.out:
        for path in plot(results, Path(args.out)):
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
