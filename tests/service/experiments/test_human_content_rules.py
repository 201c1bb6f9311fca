"""Content rules hold for the arms people write, as for the loop's: hard rules refuse the
text naming the rule, warnings come back with the arm."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.factories import create_random_experiment

RULES = {"banned_phrases": ["free shipping"], "max_length": 60}


@pytest.fixture
def experiment(client: TestClient, admin) -> dict:
    return create_random_experiment(client, admin, arms=2, content_rules=RULES)


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        ("FREE   Shipping on every order", "banned_phrase"),
        ("x" * 61, "too_long"),
        ("Hello {{ last_name }}, new arrivals", "unknown_placeholder"),
        ("Hello {{ first_name, new arrivals", "malformed_placeholder"),
    ],
)
def test_a_person_adding_an_arm_is_refused_by_a_hard_rule(
    client: TestClient, admin, experiment, content, rule
):
    key = experiment["key"]
    response = client.post(f"/v1/experiments/{key}/arms", json={"content": content}, headers=admin)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"]["field"] == "content"
    assert error["details"]["rules"] == [rule]
    arms = client.get(f"/v1/experiments/{key}", headers=admin).json()["arms"]
    assert len(arms) == 2  # nothing was added


def test_an_edit_is_held_to_the_same_rules(client: TestClient, admin, experiment):
    key, arm = experiment["key"], experiment["arms"][1]["id"]
    response = client.post(
        f"/v1/experiments/{key}/arms/{arm}/edit",
        json={"content": "Free shipping, today only", "reason": "punchier"},
        headers=admin,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["rules"] == ["banned_phrase"]
    arms = client.get(f"/v1/experiments/{key}", headers=admin).json()["arms"]
    assert [a["status"] for a in arms] == ["live", "live"]  # the original was not retired


def test_creating_an_experiment_checks_every_arm_against_its_rules(client: TestClient, admin):
    body = {
        "key": "rules-at-birth",
        "name": "Rules at birth",
        "content_rules": RULES,
        "arms": [{"content": "A fine line"}, {"content": "Free shipping for you"}],
    }
    response = client.post("/v1/experiments", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "arms.1.content"
    assert client.get("/v1/experiments/rules-at-birth", headers=admin).status_code == 404


def test_warnings_pass_and_come_back_with_the_arm(client: TestClient, admin, experiment):
    key = experiment["key"]
    response = client.post(
        f"/v1/experiments/{key}/arms", json={"content": "BIG NEWS for you!!!"}, headers=admin
    )
    assert response.status_code == 201, response.text
    codes = [w["code"] for w in response.json()["warnings"]]
    assert "all_caps" in codes
    assert "repeated_punctuation" in codes
    listed = client.get(f"/v1/experiments/{key}", headers=admin).json()["arms"]
    assert [a["warnings"] for a in listed][:2] == [[], []]
    assert [w["code"] for w in listed[2]["warnings"]] == codes
