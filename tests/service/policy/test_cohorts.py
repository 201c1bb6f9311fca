"""Cohorts carry the mean and the spread of their exposures' ages, from the stored sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from service.policy.cohorts import build_cohorts
from service.policy.figures import refresh_hint
from service.policy.inputs import StatRow

HOUR = datetime(2026, 11, 2, 10, tzinfo=UTC)


def sums(offsets_hours: list[float]) -> tuple[int, float, float]:
    o = np.asarray(offsets_hours)
    return o.size, float(o.sum()), float((o**2).sum())


def test_a_cells_ages_have_the_mean_and_spread_of_its_decisions():
    # Arm 1: decisions at 10:00 and 10:45 in one segment, 10:30 in another; read at 11:00.
    rows = [
        StatRow.of_sums("a", 1, HOUR, "exposure", *sums([0.0, 0.75])),
        StatRow.of_sums("b", 1, HOUR, "exposure", *sums([0.5])),
        StatRow.of_sums("a", 1, HOUR, "click", 1),
    ]
    cohorts = build_cohorts(
        rows,
        arm_ids=[1],
        metrics=["exposure", "click"],
        segmented=False,
        now=HOUR + timedelta(hours=1),
    )
    ages = np.array([1.0, 0.25, 0.5])
    assert cohorts.exposure_age_hours[0, 0, 0] == pytest.approx(ages.mean())
    assert cohorts.exposure_age_spread_hours[0, 0, 0] == pytest.approx(ages.std())
    assert cohorts.age_hours[0] == pytest.approx(ages.mean())
    assert cohorts.age_spread_hours[0] == pytest.approx(ages.std())
    segmented = build_cohorts(
        rows, arm_ids=[1], metrics=["exposure"], segmented=True, now=HOUR + timedelta(hours=1)
    )
    assert segmented.segments == ("a", "b")
    assert segmented.exposure_age_spread_hours[:, 0, 0] == pytest.approx(
        [0.375, 0.0, ages.std()]  # the empty rest slot takes its hour's
    )


def test_rows_without_squares_are_one_age_and_rows_without_offsets_spread_evenly():
    now = HOUR + timedelta(minutes=40)
    old_mean = StatRow("all", 1, HOUR, "exposure", 10, 0.25)  # between revisions 0003 and 0007
    no_offsets = StatRow("all", 1, HOUR, "exposure", 10)  # before revision 0003
    first = build_cohorts([old_mean], arm_ids=[1], metrics=["exposure"], segmented=False, now=now)
    assert first.exposure_age_hours[0, 0, 0] == pytest.approx(40 / 60 - 0.25)
    assert first.exposure_age_spread_hours[0, 0, 0] == 0.0
    second = build_cohorts(
        [no_offsets], arm_ids=[1], metrics=["exposure"], segmented=False, now=now
    )
    # Evenly over the 40 minutes that have passed: mean 20 minutes, spread 40 / sqrt(12).
    assert second.exposure_age_hours[0, 0, 0] == pytest.approx(20 / 60)
    assert second.exposure_age_spread_hours[0, 0, 0] == pytest.approx(40 / 60 / np.sqrt(12))


def test_a_cohort_is_young_until_its_younger_point_has_passed_the_window():
    window = 168.0
    # Mean age just past the window, but a third of the decisions are 45 minutes younger.
    now = HOUR + timedelta(hours=window + 0.3)
    rows = [StatRow.of_sums("all", 1, HOUR, "exposure", *sums([0.0, 0.0, 0.75]))]
    cohorts = build_cohorts(rows, arm_ids=[1], metrics=["exposure"], segmented=False, now=now)
    assert cohorts.age_hours[0] > window
    assert refresh_hint(cohorts, window).youngest_age_hours == pytest.approx(cohorts.age_hours[0])
    later = build_cohorts(
        rows, arm_ids=[1], metrics=["exposure"], segmented=False, now=now + timedelta(hours=1)
    )
    assert refresh_hint(later, window).youngest_age_hours is None
