"""Helpers for the loop tests: the scripted copywriter served over HTTP, and an experiment
with evidence (question arms clearly ahead of statements). Test modules wrap
`serve_copywriter` in a session fixture of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from service.core.settings import Settings
from simulation.copywriter_server import CopywriterControl, running_copywriter
from tests.service.helpers import decide_many, later

MODEL = "copywriter-1"
BANNED = "guaranteed"

# Three question arms well ahead of three statements: enough arms for the tag regression
# to call `question` a positive effect, and for every arm to pass the minimum sample.
SEED_ARMS: list[tuple[str, list[str], float]] = [
    ("Ready for the new season edit?", ["question"], 0.10),
    ("Have you seen our spring collection?", ["question"], 0.09),
    ("Looking for the weekend essentials?", ["question"], 0.08),
    ("Discover the styles everyone is buying", [], 0.03),
    ("Meet fresh picks in your size", [], 0.035),
    ("Shop this week's best sellers", [], 0.04),
]


def serve_copywriter() -> Iterator[tuple[str, CopywriterControl]]:
    with running_copywriter() as server:
        yield server


def llm_settings(settings: Settings, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": url,
        "llm_api_key": "test-key",
        "llm_model": MODEL,
        "llm_timeout_seconds": 3.0,
        "llm_max_retries": 1,
    }
    return settings.model_copy(update=values | overrides)


def seed_experiment(
    client: TestClient,
    admin: dict[str, str],
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    *,
    key: str = "spring",
    sends: int = 1800,
    arms: list[tuple[str, list[str], float]] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Create the experiment, send `sends` decisions and click events that follow each
    arm's rate (deterministically), and publish a snapshot."""
    arms = arms or SEED_ARMS
    body = {
        "key": key,
        "name": "Spring subject lines",
        "arms": [
            {"content": content, "tags": tags, "control": i == 3}
            for i, (content, tags, _rate) in enumerate(arms)
        ],
        "min_exposures": 100,
        "min_successes": 3,
        "brief": {"audience": "lapsed shoppers", "goal": "clicks", "brand_voice": "warm"},
        "content_rules": {"max_length": 80, "banned_phrases": [BANNED]},
        **settings,
    }
    response = client.post("/v1/experiments", json=body, headers=admin)
    assert response.status_code == 201, response.text
    experiment = response.json()
    feed(client, decide, ingest, runtime, experiment, sends)
    return experiment


def feed(
    client: TestClient,
    decide: dict[str, str],
    ingest: dict[str, str],
    runtime: Runtime,
    experiment: dict[str, Any],
    sends: int,
    rates: dict[int, float] | None = None,
) -> None:
    rates = rates or {
        arm["id"]: rate for arm, (_c, _t, rate) in zip(experiment["arms"], SEED_ARMS, strict=False)
    }
    decisions = decide_many(client, decide, runtime, experiment["key"], sends)
    seen: dict[int, int] = {}
    events = []
    for decision in decisions:
        arm_id = decision["arm"]["id"]
        k = seen.get(arm_id, 0)
        seen[arm_id] = k + 1
        rate = rates.get(arm_id, 0.05)
        if int((k + 1) * rate) > int(k * rate):
            events.append(
                {
                    "event_id": f"click-{decision['decision_id'][-12:]}-{k}",
                    "decision_id": decision["decision_id"],
                    "type": "click",
                }
            )
    if events:
        response = client.post("/v1/events", json=events, headers=ingest)
        assert response.status_code == 200, response.text
    publish(runtime)


# When the fixtures' snapshots are computed: past the attribution window, so every cohort is
# final. Sooner, a first send whose clicks all came at once cannot rule out a slower wave
# still to come (``bandits.delay_unseen``), and the loop rightly learns nothing from it.
MATURE_MINUTES = 8 * 24 * 60.0


def publish(runtime: Runtime) -> None:
    runtime.refresher.recompute_all(now=later(MATURE_MINUTES))
    runtime.refresher.reload()


def run_loop(client: TestClient, admin: dict[str, str], key: str) -> dict[str, Any]:
    response = client.post(f"/v1/experiments/{key}/loop-runs", headers=admin)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def pending(client: TestClient, admin: dict[str, str], key: str) -> list[dict[str, Any]]:
    response = client.get(
        "/v1/proposals", params={"status": "pending", "experiment": key}, headers=admin
    )
    assert response.status_code == 200, response.text
    proposals: list[dict[str, Any]] = response.json()["proposals"]
    return proposals
