"""A batch is decided from columns (ids minted together, keyed arms over arrays): the same
decisions as one unit at a time."""

from __future__ import annotations

import os
import random
import struct
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bandits import PreparedSampler, uniforms_from_digest, uniforms_from_digests
from service.core.clock import Clock, ManualClock
from service.core.runtime import Runtime
from service.core.tokens import DecisionSigner
from service.deciding.decider import Choice, Unit
from tests.service.factories import create_random_experiment

NOW = datetime(2026, 11, 30, 21, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    """Ids carry the second they were minted in: replicas compared here share one."""
    return ManualClock(NOW)


def _unit(i: int, send: str) -> Unit:
    tier = (None, "gold", "silver")[i % 3]
    return Unit(f"person-{i}", send, {"tier": tier} if tier else None)


def _forget_decisions(runtime: Runtime) -> None:
    """Empty the stored decisions, so the next replica mints rather than reads back."""
    with runtime.engine.begin() as connection:
        connection.execute(text("DELETE FROM stat_bucket"))
        connection.execute(text("DELETE FROM decision"))


def _fresh_replica(runtime: Runtime) -> Runtime:
    other = Runtime(runtime.settings, engine=runtime.engine, clock=runtime.clock)
    other.refresher.reload()
    return other


def test_a_keyed_unit_gets_one_decision_in_any_batch_and_alone(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    exp = create_random_experiment(
        client, admin, arms=4, holdout_share=0.3, segment_attribute="tier"
    )
    units = [_unit(i, "send-7") for i in range(60)]
    body = {
        "experiment": exp["key"],
        "units": [
            {"unit_id": u.unit_id, "send_id": u.send_id, "context": u.context} for u in units
        ],
    }
    answered = client.post("/v1/choose/batch", json=body, headers=decide)
    assert answered.status_code == 200, answered.text
    in_batch = answered.json()["decisions"]
    assert any(d["holdout"] for d in in_batch)
    assert not all(d["holdout"] for d in in_batch)

    def seen(choice: Choice) -> tuple[object, ...]:
        return (choice.decision_id, choice.arm.id, choice.propensity, choice.explored)

    # Alone, on another replica that has stored nothing: the scalar path.
    _forget_decisions(runtime)
    alone_replica = _fresh_replica(runtime)
    alone = [seen(alone_replica.decider.choose(exp["key"], [u])[0]) for u in units]
    assert alone == [
        (d["decision_id"], d["arm"]["id"], d["propensity"], d["explored"]) for d in in_batch
    ]

    # In another batch: reordered, mixed with unkeyed units, on a third replica.
    _forget_decisions(runtime)
    mixed = [u for unit in reversed(units) for u in (unit, Unit(f"anon-{unit.unit_id}"))]
    other = _fresh_replica(runtime)
    again = [seen(c) for c in other.decider.choose(exp["key"], mixed)[::2]]
    assert again == alone[::-1]

    # Exact propensities: the served segment's allocation, or 1 for a holdout unit, and the
    # id carries the same number.
    policy = other.decider.policy(exp["key"])
    index = {arm.id: n for n, arm in enumerate(policy.arms)}
    for unit, decision in zip(units, in_batch, strict=True):
        token = runtime.signer.verify(decision["decision_id"])
        assert token.propensity == decision["propensity"]
        if decision["holdout"]:
            assert decision["propensity"] == 1.0
            continue
        _segment, seg_policy = policy.segment_for(unit.context)
        assert decision["propensity"] == float(seg_policy.allocation[index[decision["arm"]["id"]]])


def test_a_keyed_batch_stores_each_unit_once_and_answers_repeats_alike(
    client: TestClient, decide, admin, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    units = [{"unit_id": f"u{i % 20}", "send_id": "s"} for i in range(50)]
    body = {"experiment": exp["key"], "units": units}
    first = client.post("/v1/choose/batch", json=body, headers=decide).json()["decisions"]
    ids = [d["decision_id"] for d in first]
    assert ids[:20] * 2 + ids[:10] == ids
    retried = _fresh_replica(runtime).decider.choose(
        exp["key"], [Unit(u["unit_id"], u["send_id"]) for u in units]
    )
    assert [c.decision_id for c in retried] == ids
    with runtime.engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM decision")).scalar_one()
        exposures = connection.execute(
            text("SELECT sum(count) FROM stat_bucket WHERE metric = 'exposure'")
        ).scalar_one()
    assert (stored, exposures) == (20, 20)


def test_ids_minted_together_are_the_ids_minted_one_by_one() -> None:
    signer = DecisionSigner([("k1", "a signing secret"), ("k0", "an older one")])
    rng = random.Random(15)
    for _ in range(50):
        n = rng.randint(1, 60)  # one by one under 16, numpy records from 16
        arm_ids = [rng.randint(0, 2**32 - 1) for _ in range(n)]
        propensities = [rng.choice([rng.random(), 1.0, 1e-300]) for _ in range(n)]
        nonces = os.urandom(8 * n)
        fixed = {
            "experiment_id": rng.randint(0, 2**32 - 1),
            "epoch": rng.randint(0, 2**16 - 1),
            "segment": rng.choice(["__all__", "gold", "ünïcode"]),
            "policy_version": rng.randint(0, 2**32 - 1),
            "issued_at": NOW,
        }
        together = signer.mint_batch(
            arm_ids=np.array(arm_ids), propensities=propensities, nonces=nonces, **fixed
        )
        one_by_one = [
            signer.mint(arm_id=a, propensity=p, nonce=nonces[8 * j : 8 * j + 8], **fixed)
            for j, (a, p) in enumerate(zip(arm_ids, propensities, strict=True))
        ]
        assert together == one_by_one
    random_nonces = signer.mint_batch(
        experiment_id=1, epoch=0, segment="x", policy_version=1, issued_at=NOW,
        arm_ids=[3] * 5, propensities=[0.25] * 5,
    )  # fmt: skip
    assert len(set(random_nonces)) == 5
    assert {signer.verify(t).propensity for t in random_nonces} == {0.25}


@pytest.mark.parametrize("n", [1, 40])
@pytest.mark.parametrize(
    ("field", "value"),
    [("experiment_id", -1), ("epoch", 2**16), ("arm_ids", 2**32), ("arm_ids", -1)],
)
def test_a_field_out_of_range_is_refused_as_mint_refuses_it(field: str, value: int, n: int) -> None:
    signer = DecisionSigner([("k1", "a signing secret")])
    fixed: dict[str, object] = {
        "experiment_id": 1,
        "epoch": 1,
        "segment": "x",
        "policy_version": 1,
        "issued_at": NOW,
        "arm_ids": [1] * n,
        "propensities": [0.5] * n,
    }
    fixed[field] = [1] * (n - 1) + [value] if field == "arm_ids" else value
    with pytest.raises(struct.error):
        signer.mint_batch(**fixed)  # type: ignore[arg-type]


def test_keyed_uniforms_and_arms_over_arrays_are_the_scalar_ones() -> None:
    rng = np.random.default_rng(15)
    digests = [os.urandom(32) for _ in range(400)]
    u_explore, u_arm = uniforms_from_digests(b"".join(digests), 32)
    assert list(zip(u_explore.tolist(), u_arm.tolist(), strict=True)) == [
        uniforms_from_digest(d) for d in digests
    ]
    for _ in range(100):
        k = int(rng.integers(1, 7))
        eligible = rng.random(k) < 0.7
        eligible[0] = True
        exploit = rng.random(k) * eligible
        exploit[0] += 0.01
        sampler = PreparedSampler.prepare(exploit, eligible, float(rng.random() * 0.5))
        arms, explored = sampler.from_uniform_arrays(u_explore, u_arm)
        assert list(zip(arms.tolist(), explored.tolist(), strict=True)) == [
            sampler.from_uniforms(a, b) for a, b in zip(u_explore, u_arm, strict=True)
        ]


def test_unkeyed_units_are_logged_under_their_own_unit_hash(
    client: TestClient, decide, admin, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    units = [{"unit_id": f"u{i}"} if i % 3 else {} for i in range(30)]
    body = {"experiment": exp["key"], "units": units}
    decisions = client.post("/v1/choose/batch", json=body, headers=decide).json()["decisions"]
    assert runtime.decision_log.flush() == 30
    with runtime.engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT id, unit_hash FROM decision")).all())
    assert [stored[d["decision_id"]] for d in decisions] == [
        runtime.signer.unit_hash(u["unit_id"]) if u else None for u in units
    ]
