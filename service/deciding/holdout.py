"""The holdout: keyed units held out of the loop, who always get the control arm.

Membership comes from the unit's stored hash (an HMAC of the unit id, already computed for
every keyed decision), so it costs one integer parse, is the same on every replica and for
every send, and a person stays in it. It does not depend on the experiment: with shares
s1 <= s2 the units held out at s1 are held out at s2 too, and a library's experiments hold
out the same people, so "what the loop earned" compares the same two audiences everywhere.

Only keyed decisions (unit and send id) can be held out: an unkeyed request has no unit to
keep out consistently, so it is always served by the policy (and never counted in either
group of the lift). A holdout decision gets the control arm (or, without a control mark,
the first arm: the experiment's fallback), propensity 1, is never explored, and is stored
with `holdout = true` so evaluation can set it apart.
"""

from __future__ import annotations

from datetime import datetime

from service.core.tokens import DecisionSigner
from service.deciding.records import DecisionRecord
from service.policy.loaded import LoadedPolicy, ServingArm

_SPAN = float(1 << 32)


def in_holdout(unit_hash: str, share: float) -> bool:
    """Whether the unit with this stored hash is in a holdout of `share` (0 to 1)."""
    if share <= 0.0:
        return False
    return int(unit_hash[-8:], 16) < share * _SPAN


def holdout_arm(policy: LoadedPolicy) -> ServingArm | None:
    """The arm a holdout unit gets, or None when the experiment holds no one out."""
    if policy.holdout_share <= 0.0:
        return None
    return policy.fallback


def holdout_record(
    signer: DecisionSigner,
    policy: LoadedPolicy,
    arm: ServingArm,
    *,
    segment: str,
    unit_hash: str,
    send_id: str,
    nonce: bytes,
    now: datetime,
) -> DecisionRecord:
    """The stored decision of a holdout unit: the control arm with propensity 1."""
    decision_id = signer.mint(
        experiment_id=policy.experiment_id,
        epoch=policy.epoch,
        arm_id=arm.id,
        segment=segment,
        propensity=1.0,
        policy_version=policy.version,
        issued_at=now,
        nonce=nonce,
    )
    return DecisionRecord(
        id=decision_id,
        experiment_id=policy.experiment_id,
        epoch=policy.epoch,
        arm_id=arm.id,
        segment=segment,
        unit_hash=unit_hash,
        send_id=send_id,
        propensity=1.0,
        explored=False,
        policy_version=policy.version,
        created_at=now,
        counts_exposure=policy.counts_exposure_at_decision,
        holdout=True,
    )
