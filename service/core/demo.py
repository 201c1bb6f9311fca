"""The quickstart's demo: an admin key and a running subject-line experiment."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from service.core import auth_repository as keys_repo
from service.core.errors import Conflict
from service.core.runtime import Runtime
from service.experiments import repository as experiments_repo
from service.experiments.schemas import ArmIn, Brief, ExperimentCreate
from service.experiments.service import create_experiment

DEMO_KEY = "demo-subject-lines"


@dataclass(frozen=True)
class DemoInfo:
    admin_key: str | None
    experiment_key: str
    created: bool


def ensure_demo(runtime: Runtime) -> DemoInfo:
    admin_key: str | None = None
    with runtime.unit_of_work() as session:
        no_keys = keys_repo.count(session) == 0
    if runtime.settings.bootstrap_admin_key:
        runtime.api_keys.bootstrap(runtime.settings.bootstrap_admin_key)
        admin_key = runtime.settings.bootstrap_admin_key
    elif no_keys:
        _row, admin_key = runtime.api_keys.create(name="demo admin", scopes=["admin"])
    try:
        _create_demo_experiment(runtime)
    except (Conflict, IntegrityError):
        # Another replica started with --demo at the same moment and created it first.
        return DemoInfo(admin_key, DEMO_KEY, False)
    return DemoInfo(admin_key, DEMO_KEY, True)


def _create_demo_experiment(runtime: Runtime) -> None:
    # The runtime's unit of work, with its handlers: the snapshot the new experiment
    # publishes is installed in the cache.
    with runtime.unit_of_work() as session:
        if experiments_repo.get_by_key(session, key=DEMO_KEY) is not None:
            raise Conflict("the demo experiment exists")
        create_experiment(
            session,
            ExperimentCreate(
                key=DEMO_KEY,
                name="Demo: spring sale subject lines",
                brief=Brief(
                    audience="Lapsed customers of an outdoor gear shop",
                    goal="Clicks through to the spring sale",
                    brand_voice="Warm, direct, no hype",
                ),
                arms=[
                    ArmIn(content="Our spring sale starts today", control=True),
                    ArmIn(
                        content="Ready for your next trail, {{first_name}}?",
                        tags=["question", "personalized"],
                    ),
                    ArmIn(content="Last chance: 30% off ends tonight", tags=["urgency"]),
                    ArmIn(content="New season, new gear", tags=["length:short"]),
                ],
            ),
            actor="demo",
        )


def curl_lines(base_url: str, admin_key: str, experiment_key: str) -> str:
    auth = f'-H "Authorization: Bearer {admin_key}"'
    json_header = '-H "Content-Type: application/json"'
    return "\n".join(
        [
            "# pick a subject line for one recipient:",
            f'curl -s {auth} {json_header} -d \'{{"experiment": "{experiment_key}", '
            f'"unit_id": "user-42", "send_id": "spring-1"}}\' {base_url}/v1/choose',
            "# report a click for that decision (paste its decision_id):",
            f'curl -s {auth} {json_header} -d \'{{"event_id": "evt-1", "decision_id": '
            f'"<decision_id>", "type": "click"}}\' {base_url}/v1/events',
            "# read the report:",
            f"curl -s {auth} {base_url}/v1/experiments/{experiment_key}/report",
        ]
    )
