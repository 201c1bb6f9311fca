"""The retirement hold: the loop may retire an arm only once the snapshot has called it
eligible for a day and at least two loop runs have completed since (DESIGN: "held for 24
hours and across two loop runs"), so one unlucky day never retires an arm.

The one place this rule is applied, by the loop's gather and by the simulator alike; the
arithmetic is ``bandits.eligibility.retirable``. How runs are counted is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from bandits.eligibility import Streak, retirable
from service.models import as_utc
from service.policy.snapshot import RetirementVerdict

ELIGIBLE_FOR = timedelta(hours=24)
RUNS_WHILE_ELIGIBLE = 2


def held_arms(
    verdicts: Mapping[int, RetirementVerdict],
    *,
    now: datetime,
    runs_since: Callable[[datetime], int],
) -> set[int]:
    """Arms whose eligibility has held long enough, across enough completed loop runs.

    ``runs_since(t)`` counts the loop runs completed since ``t``; it is asked once per
    distinct start of eligibility, and only for arms eligible for long enough already.
    """
    counted: dict[datetime, int] = {}
    streaks: dict[int, Streak] = {}
    for arm_id, verdict in verdicts.items():
        if not verdict.eligible or verdict.since is None:
            continue
        since = as_utc(verdict.since)
        if now - since < ELIGIBLE_FOR:
            continue  # cannot qualify yet: spare the count
        if since not in counted:
            counted[since] = runs_since(since)
        streaks[arm_id] = Streak(since.timestamp(), counted[since])
    return retirable(
        streaks,
        now.timestamp(),
        hold_hours=ELIGIBLE_FOR / timedelta(hours=1),
        min_loop_runs=RUNS_WHILE_ELIGIBLE,
    )
