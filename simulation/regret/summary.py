"""Runs of several policies and seeds: the summary table and the PNG plots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulation.audience import Scenario
from simulation.regret.runner import DEFAULT_POLICIES, RunResult, SimulationSettings, run

DELAY_SENSITIVE = ("arms_added_midrun", "conversions")


def policies_for(scenario: Scenario) -> tuple[str, ...]:
    """The default policies, plus ours without delay correction where delays matter."""
    extra = ("ours-naive",) if scenario.name in DELAY_SENSITIVE else ()
    return (*DEFAULT_POLICIES, *extra)


def run_many(
    scenario: Scenario,
    policies: Sequence[str],
    seeds: Iterable[int],
    settings: SimulationSettings | None = None,
    runner: Callable[..., RunResult] = run,
) -> list[RunResult]:
    """Every policy on every seed of one scenario (the same audience per seed)."""
    return [runner(scenario, policy, seed, settings) for seed in seeds for policy in policies]


@dataclass(frozen=True)
class PolicySummary:
    scenario: str
    policy: str
    seeds: int
    mean_regret: float
    p90_regret: float
    mean_ratio: float | None  # mean over seeds of regret / the uniform run's regret
    p90_ratio: float | None  # 90th percentile of that ratio
    best_share: float
    successes_vs_uniform: float | None  # mean over seeds, same audience
    unsubscribes: float
    trap_decisions: float
    suspended: dict[str, tuple[float, float]]  # arm -> mean hour, mean exposures
    suspended_runs: dict[str, int]
    retired: dict[str, int]  # arm -> runs in which it was retired


def summarise(results: Sequence[RunResult]) -> list[PolicySummary]:
    by_key: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    uniform: dict[tuple[str, int], RunResult] = {}
    for result in results:
        by_key[(result.scenario, result.policy)].append(result)
        if result.policy == "uniform":
            uniform[(result.scenario, result.seed)] = result
    out = []
    for (scenario, policy), runs in by_key.items():
        regrets = np.array([r.regret for r in runs])
        paired = [(r, uniform.get((scenario, r.seed))) for r in runs]
        ratios = np.array(
            [r.regret / u.regret for r, u in paired if u is not None and u.regret > 0]
        )
        gains = [r.successes - u.successes for r, u in paired if u is not None]
        suspended: dict[str, list[tuple[float, int]]] = defaultdict(list)
        retired: dict[str, int] = defaultdict(int)
        for r in runs:
            for arm, event in r.suspended.items():
                suspended[arm].append(event)
            for arm in r.retired:
                retired[arm] += 1
        out.append(
            PolicySummary(
                scenario=scenario,
                policy=policy,
                seeds=len(runs),
                mean_regret=float(regrets.mean()),
                p90_regret=float(np.quantile(regrets, 0.9)),
                mean_ratio=float(ratios.mean()) if ratios.size else None,
                p90_ratio=float(np.quantile(ratios, 0.9)) if ratios.size else None,
                best_share=float(np.mean([r.best_share for r in runs])),
                successes_vs_uniform=float(np.mean(gains)) if gains else None,
                unsubscribes=float(np.mean([r.unsubscribes for r in runs])),
                trap_decisions=float(np.mean([r.trap_decisions for r in runs])),
                suspended={
                    arm: (
                        float(np.mean([e[0] for e in events])),
                        float(np.mean([e[1] for e in events])),
                    )
                    for arm, events in sorted(suspended.items())
                },
                suspended_runs={arm: len(events) for arm, events in sorted(suspended.items())},
                retired=dict(sorted(retired.items())),
            )
        )
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(summaries: Sequence[PolicySummary]) -> str:
    """One block per scenario: regret, its ratio to uniform, best-arm share, gain, events."""
    lines = []
    header = (
        f"  {'policy':<15}{'regret':>9}{'p90':>9}{'/unif':>8}{'p90/u':>8}"
        f"{'best':>7}{'vs even':>9}{'unsub':>7}  events"
    )
    scenarios = list(dict.fromkeys(s.scenario for s in summaries))
    for scenario in scenarios:
        rows = [s for s in summaries if s.scenario == scenario]
        lines.append(f"{scenario} ({rows[0].seeds} seed{'s' if rows[0].seeds != 1 else ''})")
        lines.append(header)
        for s in rows:
            events = []
            for arm, (hour, exposures) in s.suspended.items():
                runs = s.suspended_runs[arm]
                events.append(
                    f"{arm} suspended {runs}/{s.seeds} at {hour:.0f}h/{exposures:.0f} exp"
                )
            if s.retired:
                events.append(
                    "retired " + ", ".join(f"{a} {n}/{s.seeds}" for a, n in s.retired.items())
                )
            lines.append(
                f"  {s.policy:<15}{s.mean_regret:>9.1f}{s.p90_regret:>9.1f}"
                f"{_fmt(s.mean_ratio, '.3f'):>8}{_fmt(s.p90_ratio, '.3f'):>8}"
                f"{s.best_share:>7.1%}{_fmt(s.successes_vs_uniform, '+.0f'):>9}"
                f"{s.unsubscribes:>7.0f}  {'; '.join(events)}"
            )
        lines.append("")
    return "\n".join(lines)


def _step_ends(hours: np.ndarray) -> np.ndarray:
    step = float(hours[1] - hours[0]) if hours.size > 1 else 1.0
    return hours + step


def plot(results: Sequence[RunResult], out_dir: Path) -> list[Path]:
    """Per scenario: mean cumulative regret by policy, and ours' allocation over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    by_scenario: dict[str, list[RunResult]] = defaultdict(list)
    for result in results:
        by_scenario[result.scenario].append(result)
    for scenario, runs in by_scenario.items():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for policy in dict.fromkeys(r.policy for r in runs):
            mine = [r for r in runs if r.policy == policy]
            curve = np.mean([r.cumulative_regret for r in mine], axis=0)
            ax.plot(_step_ends(mine[0].hours), curve, label=policy)
        ax.set_xlabel("hours")
        ax.set_ylabel("cumulative regret (expected successes lost)")
        ax.set_title(f"{scenario}: cumulative regret, mean of {len(mine)} seed(s)")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out_dir / f"{scenario}-regret.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        ours = next((r for r in runs if r.policy == "ours"), None)
        if ours is None:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.stackplot(ours.hours, ours.allocation.T, labels=ours.arm_names, step="post")
        for arm, (hour, _exposures) in ours.suspended.items():
            ax.axvline(hour, color="black", linestyle="--", linewidth=0.8)
            ax.text(hour, 0.98, f"{arm} suspended ", fontsize=7, rotation=90, va="top", ha="right")
        for arm, (hour, _exposures) in ours.retired.items():
            ax.axvline(hour, color="grey", linestyle=":", linewidth=0.8)
            ax.text(hour, 0.98, f"{arm} retired ", fontsize=7, rotation=90, va="top", ha="right")
        ax.set_ylim(0, 1)
        ax.set_xlabel("hours")
        ax.set_ylabel("allocation (overall)")
        ax.set_title(f"{scenario}: our allocation over time (seed {ours.seed})")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        path = out_dir / f"{scenario}-allocation.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
