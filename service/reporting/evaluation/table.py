"""The evaluation as a plain-text table, for `banditloop evaluate`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}"


def _span(figure: Mapping[str, Any], fmt: Any = _pct) -> str:
    if figure["value"] is None:
        return "no support"
    if figure["ci_low"] is None:
        return f"{fmt(figure['value'])}"
    return f"{fmt(figure['value'])}  [{fmt(figure['ci_low'])}, {fmt(figure['ci_high'])}]"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.0f}"


def _maturity_line(result: Mapping[str, Any]) -> str:
    maturity = result.get("maturity")
    if maturity is None or not result.get("young"):
        return "every evaluated decision has matured: figures are final"
    delay = result.get("delay") or {}
    median = delay.get("median_hours")
    source = "the policy's" if delay.get("source") == "snapshot" else "the log's own"
    return (
        f"maturity {maturity:.0%}: {result['young']:,} young decisions count as F(age) of a "
        f"decision ({source} delay CDF"
        + (f", median {median:.3g} h" if median is not None else "")
        + "); figures are eventual rates, intervals include F's uncertainty"
    )


def format_evaluation(key: str, result: Mapping[str, Any]) -> str:
    level = f"{result['level']:.0%}"
    lines = [
        f"experiment {key} (epoch {result['epoch']}), success = first {result['metric']} "
        f"within {result['attribution_window_hours']:g} h",
        f"matured decisions: {result['matured']:,}; still maturing: {result['pending']:,} "
        f"(evaluated {result['n']:,}{', newest only' if result['capped'] else ''}"
        + (f"; skipped (snapshot gone): {result['skipped']:,}" if result["skipped"] else "")
        + ")",
        _maturity_line(result),
        f"intervals: {level} bootstrap, {result['n_boot']} resamples",
        "",
    ]
    lift = result["lift"]
    if not lift["support"]:
        lines.append("lift over an even split: no support (no decisions to evaluate)")
    else:
        lines += [
            "lift over an even split",
            f"  policy earned        {_span(lift['policy'])}",
            f"  even split (SNIPS)   {_span(lift['uniform'])}",
            f"  difference           {_span(lift['difference'])}",
            f"  relative             {_span(lift['relative'], lambda v: f'{v:+.1%}')}",
            f"  successes gained     {_span(lift['successes_gained'], _count)}",
        ]
    lines += ["", f"  {'target':<22}{'n':>9}{'cover':>7}  {'IPS':<34}{'SNIPS':<34}"]
    for name, figure in result["off_policy"].items():
        if figure is None:
            continue
        label = name
        if name == "current" and figure.get("version") is not None:
            label = f"current (v{figure['version']})"
        elif name == "arm":
            label = f"arm {figure['arm_id']}"
        lines.append(
            f"  {label:<22}{figure['n']:>9,}{figure['coverage']:>7.0%}  "
            f"{_span(figure['ips']):<34}{_span(figure['snips']):<34}"
            + (f"  ({figure['reason']})" if figure.get("reason") else "")
        )
    return "\n".join(lines)
