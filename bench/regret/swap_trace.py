"""Where the swap scenario's post-swap regret goes, per seed (issue 10, round 6).

Runs the service alone on the ``swap`` clock scenario and splits the regret after the swap
(48 h) into stages: until the fatigued leader's change is detected, until the risen arm
leads the allocation, and the rest. Also prints which arms' evidence was forgotten and when.

Run: .venv/bin/python bench/regret/swap_trace.py --seeds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import simulation.regret.policies as policies  # noqa: E402
from simulation.regret.clocks import clock_runs  # noqa: E402
from simulation.regret.runner import run  # noqa: E402

SWAP_HOURS = 48.0


def trace(seed: int, hours: float | None = None) -> dict[str, Any]:
    clock = clock_runs(hours)["swap"]
    changes: list[tuple[float, dict[int, Any]]] = []
    original = policies.compute_snapshot

    def recording(inputs: Any, *, now: Any, rng: Any, delay_correction: bool = True) -> Any:
        snapshot = original(inputs, now=now, rng=rng, delay_correction=delay_correction)
        t = (now - policies.at_hours(0.0)).total_seconds() / 3600.0
        changes.append((t, dict(snapshot.changes or {})))
        return snapshot

    policies.compute_snapshot = recording
    try:
        result = run(clock.scenario, "ours", seed, clock.settings)
    finally:
        policies.compute_snapshot = original
    hours_ = result.hours
    cum = result.cumulative_regret
    alloc = result.allocation

    def regret_until(t: float) -> float:
        i = int(np.searchsorted(hours_, t, side="left")) - 1
        return float(cum[i]) if i >= 0 else 0.0

    first_seen: dict[int, tuple[float, Any]] = {}
    for t, ch in changes:
        for arm, hour in ch.items():
            if t >= SWAP_HOURS and arm not in first_seen:
                first_seen[arm] = (t, hour)
    detect = first_seen.get(4, (float("nan"), None))[0]
    after = hours_ >= SWAP_HOURS
    lead = np.argmax(alloc, axis=1)
    led = np.flatnonzero(after & (lead == 1))
    # The risen arm leads for good: the first step after which it always leads.
    stays = next((int(i) for i in led if np.all(lead[i:] == 1)), len(hours_) - 1)
    lead_at = float(hours_[stays])
    end = float(hours_[-1]) + 1.0
    d = detect if np.isfinite(detect) else end
    stages = {
        "pre-swap": regret_until(SWAP_HOURS),
        "swap-detect": regret_until(d) - regret_until(SWAP_HOURS),
        "detect-arm1lead": regret_until(max(lead_at, d)) - regret_until(d),
        "arm1lead-end": float(cum[-1]) - regret_until(max(lead_at, d)),
    }
    return {
        "seed": seed,
        "regret": result.regret,
        "first_changes": {a: (round(t, 2), str(h)) for a, (t, h) in first_seen.items()},
        "arm1_leads_from": lead_at,
        "stages": stages,
        "post_share": alloc[after].mean(axis=0).round(3).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--hours", type=float, default=None)
    args = parser.parse_args()
    started = time.time()
    rows = [trace(s, args.hours) for s in range(args.first_seed, args.first_seed + args.seeds)]
    for row in rows:
        stages = " ".join(f"{k}={v:.1f}" for k, v in row["stages"].items())
        print(
            f"seed {row['seed']}: regret {row['regret']:.1f}; {stages}; "
            f"arm-1 leads from {row['arm1_leads_from']:.1f} h; first changes "
            f"{row['first_changes']}; post-swap mean allocation {row['post_share']}"
        )
    mean = {k: np.mean([r["stages"][k] for r in rows]) for k in rows[0]["stages"]}
    print(
        "mean:",
        f"{np.mean([r['regret'] for r in rows]):.1f}",
        {k: round(v, 1) for k, v in mean.items()},
    )
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
