"""Inline SVG line charts of an experiment's history (`service.reporting.report.history`): traffic
share and rates per arm against the time each snapshot was computed. Drawn server-side, so a
page needs no chart library and works with scripts off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Colours distinguishable with the common colour-vision deficiencies (Okabe-Ito), each
# above 3:1 against white as lines; the legend also names each arm in text.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#7a6400", "#56B4E9", "#000000", "#E69F00")
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 48, 28, 12


@dataclass(frozen=True)
class Series:
    arm_id: int
    label: str
    colour: str
    points: list[tuple[float, float]]  # (position on the time axis in [0, 1], value)


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str
    series: list[Series]


def _positions(points: list[dict[str, Any]]) -> list[float]:
    """Each snapshot's place on the time axis, 0 for the first and 1 for the last: snapshots
    come irregularly (on evidence and on age), so their index would stretch quiet hours and
    squeeze busy minutes. Falls back to even spacing when the times are missing or equal."""
    try:
        times = [datetime.fromisoformat(str(p["at"])).timestamp() for p in points]
    except (KeyError, ValueError):
        times = []
    span = (times[-1] - times[0]) if times else 0.0
    if span <= 0:
        last = max(len(points) - 1, 1)
        return [i / last for i in range(len(points))]
    return [(t - times[0]) / span for t in times]


def _series(points: list[dict[str, Any]], field: str, *, measured_only: bool) -> list[Series]:
    """One line per arm. With ``measured_only``, a snapshot in which the arm had no exposure
    is left out: its figure there is the prior's, not anything measured."""
    by_arm: dict[int, list[tuple[float, float]]] = {}
    labels: dict[int, str] = {}
    for position, point in zip(_positions(points), points, strict=True):
        values = point.get(field)
        if not values:
            continue
        exposures = point.get("exposures") or [1.0] * len(values)
        for arm, value, seen in zip(point["arms"], values, exposures, strict=False):
            if measured_only and not seen:
                continue
            by_arm.setdefault(arm["id"], []).append((position, float(value)))
            labels[arm["id"]] = arm["content"]
    return [
        Series(arm_id, labels[arm_id], PALETTE[i % len(PALETTE)], pts)
        for i, (arm_id, pts) in enumerate(sorted(by_arm.items()))
    ]


def _time_labels(points: list[dict[str, Any]]) -> tuple[str, str]:
    """The axis ends: day and minute, with seconds when the history spans under an hour."""
    try:
        first, last = (datetime.fromisoformat(str(p["at"])) for p in (points[0], points[-1]))
    except (KeyError, ValueError):
        return (
            f"snapshot {points[0].get('version', '')}",
            f"snapshot {points[-1].get('version', '')}",
        )
    short = (last - first).total_seconds() < 3600
    pattern = "%d %b %H:%M:%S" if short else "%d %b %H:%M"
    return first.strftime(pattern), last.strftime(pattern) + " UTC"


def line_chart(
    points: list[dict[str, Any]], field: str, title: str, *, measured_only: bool = False
) -> Chart | None:
    series = _series(points, field, measured_only=measured_only)
    if not series or len(points) < 2:
        return None
    top = max(v for s in series for _x, v in s.points) or 1.0
    top = min(1.0, top * 1.1)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP

    def xy(position: float, value: float) -> str:
        x = PAD_LEFT + plot_w * position
        y = PAD_TOP + plot_h * (1 - value / top)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" '
        'xmlns="http://www.w3.org/2000/svg" class="chart">',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" '
        f'y2="{PAD_TOP + plot_h}" stroke="#595959"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + plot_h * (1 - fraction)
        parts.append(
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#333">{top * fraction * 100:.1f}%</text>'
        )
    start, end = _time_labels(points)
    parts.append(f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" font-size="11" fill="#333">{start}</text>')
    parts.append(
        f'<text x="{WIDTH - 8}" y="{HEIGHT - 6}" font-size="11" fill="#333" '
        f'text-anchor="end">{end}</text>'
    )
    for s in series:
        path = " ".join(xy(x, v) for x, v in s.points)
        parts.append(
            f'<polyline fill="none" stroke="{s.colour}" stroke-width="2" points="{path}">'
            f"<title>arm {s.arm_id}</title></polyline>"
        )
    parts.append("</svg>")
    return Chart(title=title, svg="".join(parts), series=series)
