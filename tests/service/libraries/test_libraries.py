"""Learnings libraries through the API: experiments name their library, the loop reads and
writes it, and it is readable as JSON, Markdown, tag effects and value."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.core.runtime import Runtime
from service.core.sessions import unit_of_work
from service.libraries import service as library_domain
from service.models import utcnow
from tests.service.factories import create_random_experiment
from variants.learnings import Evidence, LearningOp, apply_operations


def test_experiments_share_the_library_they_name(client: TestClient, admin) -> None:
    first = create_random_experiment(client, admin, library="brand-a")
    second = create_random_experiment(client, admin, library="brand-a")
    other = create_random_experiment(client, admin)
    assert first["library"] == second["library"] == "brand-a"
    assert other["library"] == "default"
    listed = client.get("/v1/libraries", headers=admin).json()["libraries"]
    brand = next(item for item in listed if item["name"] == "brand-a")
    assert brand["experiments"] == [first["key"], second["key"]]
    assert brand["cap"] == 20
    assert client.get("/v1/libraries/nope", headers=admin).status_code == 404
    moved = client.patch(
        f"/v1/experiments/{other['key']}", json={"library": "brand-a"}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["library"] == "brand-a"
    bad = client.patch(f"/v1/experiments/{other['key']}", json={"library": None}, headers=admin)
    assert bad.status_code == 422
    assert "library" in bad.text


def test_a_learning_written_in_one_experiment_is_read_by_the_next(
    client: TestClient, admin, runtime: Runtime
) -> None:
    first = create_random_experiment(client, admin, library="brand-b")
    second = create_random_experiment(client, admin, library="brand-b")
    arm = first["arms"][1]["id"]
    evidence = {
        arm: Evidence(
            arm_id=arm,
            exposures=900,
            successes=40,
            effect=0.044,
            ci_low=0.03,
            ci_high=0.06,
            experiment_key=first["key"],
        )
    }
    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
        library = library_domain.resolve(session, "brand-b")
        state, _applied, _dropped = apply_operations(
            [],
            [LearningOp(op="add", claim="Questions beat statements", evidence_arm_ids=[arm])],
            evidence=evidence,
            now=utcnow(),
            where=first["key"],
            channel="email",
        )
        library_domain.save(session, library, experiment_id=first["id"], learnings=state)
    view = client.get(f"/v1/experiments/{second['key']}/learnings", headers=admin).json()
    assert view["library"] == "brand-b"
    assert [item["claim"] for item in view["learnings"]] == ["Questions beat statements"]
    item = view["learnings"][0]
    assert item["holds"][0]["experiment_key"] == first["key"]
    assert item["evidence"][0]["experiment_key"] == first["key"]
    markdown = client.get(
        "/v1/libraries/brand-b/learnings", params={"format": "markdown"}, headers=admin
    )
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# Learnings library: brand-b" in markdown.text
    assert f"holds in: {first['key']}" in markdown.text
    # Another library does not see it.
    lonely = create_random_experiment(client, admin, library="brand-c")
    assert (
        client.get(f"/v1/experiments/{lonely['key']}/learnings", headers=admin).json()["learnings"]
        == []
    )


def test_tag_effects_and_value_answer_before_there_is_evidence(client: TestClient, admin) -> None:
    exp = create_random_experiment(client, admin, library="brand-d", holdout_share=0.1)
    effects = client.get("/v1/libraries/brand-d/tag-effects", headers=admin)
    assert effects.status_code == 200, effects.text
    assert effects.json()["effects"] == []
    assert "not enough evidence" in effects.json()["note"]
    value = client.get(f"/v1/experiments/{exp['key']}/value", headers=admin).json()
    assert value["holdout"]["available"] is False
    assert value["holdout_share"] == 0.1
    months = client.get("/v1/libraries/brand-d/value", headers=admin).json()
    assert months["library"] == "brand-d"
