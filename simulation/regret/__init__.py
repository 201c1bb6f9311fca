"""The simulator: pinned scenarios through the service's own engine on a simulated clock."""

from simulation.regret.runner import (
    DEFAULT_POLICIES,
    POLICIES,
    RunResult,
    SimulationSettings,
    run,
)

__all__ = ["DEFAULT_POLICIES", "POLICIES", "RunResult", "SimulationSettings", "run"]
