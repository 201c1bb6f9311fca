"""The realistic-clock runs of the regret benchmark: each scenario with its refresh interval.

The service refreshes every 2 s; simulating that for days is too slow, so each channel's
policies refresh on a step well inside its feedback delay (a minute for push clicks that
arrive in seconds, five minutes for email, an hour for conversions). Every policy of a run,
the service and the baselines, refreshes on the same schedule and reads the same statistics.

Every experiment setting stays at its default, the loop's too: no cadence and ``auto_retire``
off, so nothing retires an arm during the run (``loop_every_hours`` turns on a loop that
retires what the snapshot calls eligible, as an approving reviewer would).
"""

from __future__ import annotations

from dataclasses import dataclass

from bandits.audience import Scenario, clock_scenarios
from service.simulate.runner import SimulationSettings

# The policies every clock scenario compares: the service, Thompson sampling with the same
# 10% exploration share on the same delayed feedback, and the even split.
CLOCK_POLICIES = ("uniform", "thompson-explore", "ours")
REFRESH_HOURS = {"fast": 1.0 / 60.0, "email": 5.0 / 60.0, "conversions": 1.0, "swap": 5.0 / 60.0}


@dataclass(frozen=True)
class ClockRun:
    scenario: Scenario
    settings: SimulationSettings


def clock_runs(
    hours: float | None = None, loop_every_hours: float | None = None
) -> dict[str, ClockRun]:
    """Every clock scenario with its schedule; ``hours`` shortens every horizon (quick runs)."""
    return {
        name: ClockRun(
            scenario,
            SimulationSettings(
                refresh_hours=REFRESH_HOURS[name],
                hours=min(hours, scenario.horizon_hours) if hours else None,
                loop_every_hours=loop_every_hours,
            ),
        )
        for name, scenario in clock_scenarios().items()
    }
