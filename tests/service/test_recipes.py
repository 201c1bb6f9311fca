"""docs/recipes.md's code runs: the SendGrid send job's Python against a real server, the
JSON it shows parses, and the Braze call asks for what GET /v1/choose takes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.core.runtime import Runtime

RECIPES = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", RECIPES, flags=re.DOTALL)


def test_the_sendgrid_send_job_personalises_and_tracks(
    live_server: str, client: TestClient, admin, decide, runtime: Runtime
) -> None:
    body = {
        "key": "spring-subjects",
        "name": "Spring",
        "arms": [
            {"content": "{{first_name}}, ready for the new season?", "control": True},
            {"content": "Hi {{first_name}}: the spring edit is here"},
        ],
        "content_rules": {"allowed_placeholders": ["first_name"]},
    }
    created = client.post("/v1/experiments", json=body, headers=admin)
    assert created.status_code == 201, created.text
    (code,) = _blocks("python")
    code = code.replace("https://banditloop.example.com", live_server)
    code = code.replace("Bearer bl_your_decide_key", decide["Authorization"])
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/recipes.md", "exec"), namespace)  # our own document's code
    recipients = [
        {"id": "crm-1", "email": "ada@example.com", "first_name": "Ada"},
        {"id": "crm-2", "email": "bo@example.com", "first_name": ""},
    ]
    items = namespace["personalizations"](recipients, "spring-2026-03-01")
    assert [i["to"][0]["email"] for i in items] == ["ada@example.com", "bo@example.com"]
    subjects = [i["dynamic_template_data"]["subject"] for i in items]
    assert all("{{" not in s for s in subjects)
    assert subjects[0].startswith("Ada") or "Hi Ada:" in subjects[0]
    assert "there" in subjects[1]
    for item in items:
        token = runtime.signer.verify(item["custom_args"]["bl_decision"])
        assert token.experiment_id == created.json()["id"]
    # Retried with the same send id: the same decisions.
    again = namespace["personalizations"](recipients, "spring-2026-03-01")
    assert [i["custom_args"] for i in again] == [i["custom_args"] for i in items]

    # Paused: the control's text, untracked, so no custom_args.
    assert client.post("/v1/experiments/spring-subjects/pause", headers=admin).status_code == 200
    paused = namespace["personalizations"](recipients, "spring-2026-03-02")
    assert all("custom_args" not in i for i in paused)
    assert paused[0]["dynamic_template_data"]["subject"] == "Ada, ready for the new season?"

    # Service down: the control text, untracked.
    namespace["BANDITLOOP"] = "http://127.0.0.1:9"
    down = namespace["personalizations"](recipients[:1], "spring-2026-03-03")
    assert down == [
        {
            "to": [{"email": "ada@example.com"}],
            "dynamic_template_data": {"subject": "Shop this week's best sellers"},
        }
    ]


def test_the_json_examples_parse_and_the_braze_call_is_keyed() -> None:
    for block in _blocks("json"):
        json.loads(block)
    liquid = _blocks("liquid")
    assert len(liquid) == 2
    for block in liquid:
        url = re.search(r"connected_content (.+?) :headers", block)
        assert url is not None
        query = url[1].split("?", 1)[1]
        assert {p.split("=", 1)[0] for p in query.split("&")} == {
            "experiment",
            "unit_id",
            "send_id",
        }
        assert '"Authorization": "Bearer ' in block
        assert ":save bl" in block
    assert "bl.arm.content" in liquid[0]
    assert "message_extras :key bl_decision :value {{bl.decision_id}}" in liquid[1]
    assert "{% if bl.tracked %}" in liquid[1]
