"""The report's figures in words and short numbers, for people rather than programs.

Only formatting: every figure comes from `service.reporting.report` (one snapshot), none is
computed here.
"""

from __future__ import annotations

from typing import Any

from bandits.delay_model import TOO_EARLY

SHORT = 48


def too_early(row: dict[str, Any]) -> bool:
    """Whether the report labels this arm too early to judge (its ``judgement``)."""
    return bool(row.get("judgement") == TOO_EARLY)


def pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.{digits}f}%"


def interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "–"
    return f"{pct(low)} to {pct(high)}"


def short(text: str, limit: int = SHORT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def leader_sentence(report: dict[str, Any]) -> str:
    """'"Subject B" leads: 4.1% vs 3.2% for the control, 93% likely best.'"""
    rows = [r for r in report.get("arms", []) if r.get("status") == "live"]
    if not rows:
        return "No live arm is being served yet."
    if sum(r["exposures"] for r in rows) == 0:
        return "No traffic yet: every live arm shares the exploration evenly."
    leader = max(rows, key=lambda r: r["probability_best"])
    control = next((r for r in rows if r["control"]), None)
    name = f"“{short(leader['content'], 40)}”"
    rate = pct(leader["estimated_rate"])
    likely = f"{leader['probability_best'] * 100:.0f}% likely best"
    if too_early(leader):
        likely += ", too early to judge"
    if control is None:
        return f"{name} leads: {rate}, {likely}."
    if control is leader:
        others = [r for r in rows if r is not leader]
        if not others:
            return f"The control {name} is the only live arm: {rate}."
        runner_up = max(others, key=lambda r: r["probability_best"])
        return (
            f"The control {name} leads: {rate} vs {pct(runner_up['estimated_rate'])} for the "
            f"best challenger, {likely}."
        )
    return f"{name} leads: {rate} vs {pct(control['estimated_rate'])} for the control, {likely}."


def maturity_words(report: dict[str, Any]) -> str:
    rows = [r for r in report.get("arms", []) if r.get("exposures")]
    if not rows:
        return "no evidence yet"
    exposures = sum(r["exposures"] for r in rows)
    mature = sum(r["maturity"] * r["exposures"] for r in rows) / exposures
    early = sum(1 for r in rows if too_early(r))
    words = f"{mature * 100:.0f}% of eventual successes have arrived"
    if early:
        words += f"; {early} arm{'s' if early > 1 else ''} too early to judge"
    return words
