"""Plain policy inputs for tests that call ``compute_snapshot`` directly."""

from __future__ import annotations

from typing import Any

from service.policy.inputs import ExperimentInfo


def experiment_info(**settings: Any) -> ExperimentInfo:
    """A running experiment's settings (``settings`` override them)."""
    defaults: dict[str, Any] = {
        "id": 1,
        "key": "subject",
        "status": "running",
        "epoch": 1,
        "success_metric": "click",
        "exposure_event": "decision",
        "attribution_window_hours": 168.0,
        "exploration_share": 0.1,
        "min_exposures": 100,
        "min_successes": 5,
        "segment_attribute": "country",
        "half_life_hours": None,
    }
    return ExperimentInfo(**{**defaults, **settings})
