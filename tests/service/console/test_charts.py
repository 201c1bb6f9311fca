"""The console's history charts: time on the x axis, no prior-only points on the rate charts."""

from __future__ import annotations

from typing import Any

from service.console.charts import line_chart


def _point(version: int, at: str, exposures: list[float], means: list[float]) -> dict[str, Any]:
    return {
        "version": version,
        "at": at,
        "arms": [{"id": 1, "content": "A"}, {"id": 2, "content": "B"}],
        "allocation": [0.5, 0.5],
        "posterior_mean": means,
        "exposures": exposures,
    }


POINTS = [
    _point(1, "2026-11-30T10:00:00+00:00", [0.0, 0.0], [0.5, 0.5]),
    _point(2, "2026-11-30T10:01:00+00:00", [100.0, 0.0], [0.04, 0.5]),
    _point(3, "2026-11-30T11:00:00+00:00", [200.0, 150.0], [0.05, 0.12]),
]


def test_snapshots_sit_at_their_time_not_their_index() -> None:
    chart = line_chart(POINTS, "allocation", "Traffic share")
    assert chart is not None
    positions = [x for x, _v in chart.series[0].points]
    assert positions == [0.0, 1 / 60, 1.0]
    assert "30 Nov 10:00<" in chart.svg
    assert "30 Nov 11:00 UTC<" in chart.svg


def test_a_history_under_an_hour_is_labelled_to_the_second() -> None:
    chart = line_chart(POINTS[:2], "allocation", "Traffic share")
    assert chart is not None
    assert "30 Nov 10:00:00<" in chart.svg
    assert "30 Nov 10:01:00 UTC<" in chart.svg


def test_rate_lines_skip_snapshots_where_the_arm_had_no_exposure() -> None:
    chart = line_chart(POINTS, "posterior_mean", "Estimated rate", measured_only=True)
    assert chart is not None
    by_arm = {s.arm_id: s.points for s in chart.series}
    assert [v for _x, v in by_arm[1]] == [0.04, 0.05]
    assert by_arm[2] == [(1.0, 0.12)]
    # The axis is scaled to what was measured, not to the 50% prior mean.
    assert "13.2%" in chart.svg


def test_equal_or_missing_times_fall_back_to_even_spacing() -> None:
    points = [dict(p, at="not a time") for p in POINTS]
    chart = line_chart(points, "allocation", "Traffic share")
    assert chart is not None
    assert [x for x, _v in chart.series[0].points] == [0.0, 0.5, 1.0]
    assert "snapshot 1" in chart.svg
