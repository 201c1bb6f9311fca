"""Inline SVG line charts of an experiment's history (`service.reporting.report.history`): traffic
share and estimated rate per arm over snapshot versions. Drawn server-side, so a page
needs no chart library and works with scripts off."""

from __future__ import annotations

from dataclasses import dataclass
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
    points: list[tuple[int, float]]  # (point index, value)


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str
    series: list[Series]


def _series(points: list[dict[str, Any]], field: str) -> list[Series]:
    by_arm: dict[int, list[tuple[int, float]]] = {}
    labels: dict[int, str] = {}
    for index, point in enumerate(points):
        values = point.get(field)
        if not values:
            continue
        for arm, value in zip(point["arms"], values, strict=False):
            by_arm.setdefault(arm["id"], []).append((index, float(value)))
            labels[arm["id"]] = arm["content"]
    return [
        Series(arm_id, labels[arm_id], PALETTE[i % len(PALETTE)], pts)
        for i, (arm_id, pts) in enumerate(sorted(by_arm.items()))
    ]


def line_chart(points: list[dict[str, Any]], field: str, title: str) -> Chart | None:
    series = _series(points, field)
    if not series or len(points) < 2:
        return None
    top = max(v for s in series for _i, v in s.points) or 1.0
    top = min(1.0, top * 1.1)
    span_x = max(len(points) - 1, 1)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP

    def xy(index: int, value: float) -> str:
        x = PAD_LEFT + plot_w * index / span_x
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
    parts.append(
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" font-size="11" fill="#333">'
        f"snapshot {points[0]['version']}</text>"
    )
    parts.append(
        f'<text x="{WIDTH - 8}" y="{HEIGHT - 6}" font-size="11" fill="#333" '
        f'text-anchor="end">snapshot {points[-1]["version"]}</text>'
    )
    for s in series:
        path = " ".join(xy(i, v) for i, v in s.points)
        parts.append(
            f'<polyline fill="none" stroke="{s.colour}" stroke-width="2" points="{path}">'
            f"<title>arm {s.arm_id}</title></polyline>"
        )
    parts.append("</svg>")
    return Chart(title=title, svg="".join(parts), series=series)
