"""Choose arms for one unit or a batch from the loaded policy; never waits on the database
to decide. Keyed decisions (unit and send id) are idempotent: stored under a unique key,
read back, and remembered in a small in-memory cache."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from bandits import sample_arms, uniforms_from_digest
from service.core import metrics
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.errors import NotFound
from service.core.sessions import unit_of_work
from service.core.tokens import DecisionSigner
from service.core.vocabulary import ExperimentStatus
from service.deciding import repository as decisions_repo
from service.deciding.bulk import insert_keyed_decisions
from service.deciding.holdout import holdout_arm, holdout_record, in_holdout
from service.deciding.log import DecisionRecord, exposure_deltas
from service.deciding.records import DecisionSink
from service.measuring import stats_repository as stats_repo
from service.policy.loaded import LoadedPolicy, SegmentPolicy, ServingArm


@dataclass(frozen=True, slots=True)
class Unit:
    unit_id: str | None = None
    send_id: str | None = None
    context: Mapping[str, Any] | None = None

    @property
    def keyed(self) -> bool:
        return bool(self.unit_id) and bool(self.send_id)


@dataclass(frozen=True, slots=True)
class Choice:
    # None for a fallback answer: no decision is stored, so no id is handed out that could
    # only ever produce orphan events.
    decision_id: str | None
    arm: ServingArm
    propensity: float
    explored: bool
    policy_version: int
    fallback: bool
    # A keyed unit in the experiment's holdout: the control arm, propensity 1.
    holdout: bool = False


class KeyedCache:
    """LRU of keyed decisions this replica has stored or read back.

    Locked: /choose runs in the thread pool, and an unlocked read (get, then move_to_end)
    raced an eviction by another thread's put into a KeyError.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, str, str], Choice] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str, str]) -> Choice | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def put(self, key: tuple[int, str, str], choice: Choice) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._items[key] = choice
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class Decider:
    def __init__(
        self,
        *,
        signer: DecisionSigner,
        policy_lookup: Callable[[str], LoadedPolicy | None],
        decision_log: DecisionSink,
        engine: Engine,
        keyed_cache_size: int,
        rng: np.random.Generator | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._signer = signer
        self._clock = clock
        self._lookup = policy_lookup
        self._log = decision_log
        self._engine = engine
        self._keyed = KeyedCache(keyed_cache_size)
        self._rng = rng or np.random.default_rng()
        # The decisions counter's child per (experiment, arm, explored): ``labels()`` looks
        # its arguments up under a lock on every call, a tenth of a single /choose.
        self._counters: dict[tuple[str, int, bool], Any] = {}

    def forget_keyed(self) -> None:
        """Drop remembered keyed decisions (after a unit is deleted)."""
        self._keyed.clear()

    def policy(self, experiment_key: str) -> LoadedPolicy:
        policy = self._lookup(experiment_key)
        if policy is None:
            raise NotFound(f"unknown experiment {experiment_key!r}", field="experiment")
        return policy

    def choose(self, experiment_key: str, units: Sequence[Unit]) -> list[Choice]:
        policy = self.policy(experiment_key)
        now = self._clock.now()
        if not policy.servable:
            return self._fallback(policy, units)
        if len(units) == 1 and not units[0].keyed:
            return [self._one_unkeyed(policy, units[0], now)]
        choices: list[Choice | None] = [None] * len(units)
        records: list[DecisionRecord] = []
        keyed: list[tuple[int, tuple[int, str, str], DecisionRecord, Choice]] = []
        unkeyed_by_segment: dict[str, list[int]] = defaultdict(list)
        segment_policies: dict[str, SegmentPolicy] = {}
        for i, unit in enumerate(units):
            segment, seg_policy = policy.segment_for(unit.context)
            segment_policies[segment] = seg_policy
            if unit.keyed:
                assert unit.unit_id is not None
                assert unit.send_id is not None
                unit_hash = self._signer.unit_hash(unit.unit_id)
                key = (policy.experiment_id, unit_hash, unit.send_id)
                cached = self._keyed.get(key)
                if cached is not None:
                    choices[i] = cached
                    continue
                record, choice = self._keyed_choice(
                    policy, seg_policy, unit, unit_hash, segment, now
                )
                keyed.append((i, key, record, choice))
            else:
                unkeyed_by_segment[segment].append(i)

        for segment, indexes in unkeyed_by_segment.items():
            seg_policy = segment_policies[segment]
            arm_idx, explored = self._sample(seg_policy, len(indexes))
            for i, record, choice in zip(
                indexes,
                *self._unkeyed(
                    policy, seg_policy, segment, [units[i] for i in indexes], now, arm_idx, explored
                ),
                strict=True,
            ):
                records.append(record)
                choices[i] = choice

        if keyed:
            for i, choice in self._store_keyed(policy, keyed).items():
                choices[i] = choice
        if records:
            self._log.append(records)
        done = [c for c in choices if c is not None]
        # One labelled child per (arm, explored) in the batch, not one look-up per decision.
        for (arm_id, was_explored), n in Counter((c.arm.id, c.explored) for c in done).items():
            self._count(policy.key, arm_id, was_explored, n)
        return done

    def _count(self, experiment_key: str, arm_id: int, explored: bool, n: int) -> None:
        key = (experiment_key, arm_id, explored)
        child = self._counters.get(key)
        if child is None:
            if len(self._counters) > 10_000:  # arms come and go over a long life
                self._counters.clear()
            child = metrics.DECISIONS.labels(experiment_key, str(arm_id), str(explored))
            self._counters[key] = child
        child.inc(n)

    def _one_unkeyed(self, policy: LoadedPolicy, unit: Unit, now: datetime) -> Choice:
        """A single unkeyed decision (the common /choose): what ``choose`` does for a batch
        of one, the same draws in the same order, without the batch's bookkeeping."""
        segment, seg_policy = policy.segment_for(unit.context)
        (a,), (explored,) = self._sample(seg_policy, 1)
        arm = policy.arms[a]
        propensity = float(seg_policy.allocation[a])
        decision_id = self._signer.mint_many(
            experiment_id=policy.experiment_id,
            epoch=policy.epoch,
            segment=segment,
            policy_version=policy.version,
            issued_at=now,
            arms=((arm.id, propensity),),
        )[0]
        record = DecisionRecord(
            decision_id,
            policy.experiment_id,
            policy.epoch,
            arm.id,
            segment,
            self._signer.unit_hash(unit.unit_id) if unit.unit_id else None,
            unit.send_id,
            propensity,
            explored,
            policy.version,
            now,
            policy.counts_exposure_at_decision,
        )
        self._log.append((record,))
        self._count(policy.key, arm.id, explored, 1)
        return Choice(decision_id, arm, propensity, explored, policy.version, False)

    def _sample(self, seg_policy: SegmentPolicy, n: int) -> tuple[list[int], list[bool]]:
        if n == 1:
            # A single /choose: the same two uniforms, in the same order, and the same rule
            # as sample_arms (so a seeded draw is identical), without the vectorised set-up
            # that costs more than the draw itself for one unit.
            u_explore, u_arm = self._rng.random(2).tolist()
            arm, explored = seg_policy.sampler.from_uniforms(u_explore, u_arm)
            return [arm], [explored]
        arms, flags = sample_arms(
            seg_policy.exploit, seg_policy.eligible, seg_policy.exploration_share, n, self._rng
        )
        return arms.tolist(), flags.tolist()

    def _unkeyed(
        self,
        policy: LoadedPolicy,
        seg_policy: SegmentPolicy,
        segment: str,
        units: Sequence[Unit],
        now: datetime,
        arm_idx: Sequence[int],
        explored: Sequence[bool],
    ) -> tuple[list[DecisionRecord], list[Choice]]:
        """The records and answers of one segment's unkeyed draws, the ids minted together
        (``DecisionSigner.mint_many``) and each arm's propensity and answer looked up once."""
        arms = policy.arms
        propensities = [float(p) for p in seg_policy.allocation]
        ids = self._signer.mint_many(
            experiment_id=policy.experiment_id,
            epoch=policy.epoch,
            segment=segment,
            policy_version=policy.version,
            issued_at=now,
            arms=[(arms[a].id, propensities[a]) for a in arm_idx],
        )
        unit_hash = self._signer.unit_hash
        counts = policy.counts_exposure_at_decision
        records: list[DecisionRecord] = []
        choices: list[Choice] = []
        for decision_id, unit, a, e in zip(ids, units, arm_idx, explored, strict=True):
            arm = arms[a]
            propensity = propensities[a]
            records.append(
                DecisionRecord(
                    decision_id,
                    policy.experiment_id,
                    policy.epoch,
                    arm.id,
                    segment,
                    unit_hash(unit.unit_id) if unit.unit_id else None,
                    unit.send_id,
                    propensity,
                    bool(e),
                    policy.version,
                    now,
                    counts,
                )
            )
            choices.append(Choice(decision_id, arm, propensity, bool(e), policy.version, False))
        return records, choices

    def _keyed_choice(
        self,
        policy: LoadedPolicy,
        seg_policy: SegmentPolicy,
        unit: Unit,
        unit_hash: str,
        segment: str,
        now: datetime,
    ) -> tuple[DecisionRecord, Choice]:
        assert unit.send_id is not None
        digest = self._signer.keyed_digest(policy.experiment_id, unit_hash, unit.send_id)
        held_out_arm = holdout_arm(policy)
        if held_out_arm is not None and in_holdout(unit_hash, policy.holdout_share):
            record = holdout_record(
                self._signer,
                policy,
                held_out_arm,
                segment=segment,
                unit_hash=unit_hash,
                send_id=unit.send_id,
                nonce=digest[16:24],
                now=now,
            )
            return record, Choice(
                record.id, held_out_arm, 1.0, False, policy.version, False, holdout=True
            )
        u_explore, u_arm = uniforms_from_digest(digest)
        a, explored = seg_policy.sampler.from_uniforms(u_explore, u_arm)
        return self._record(
            policy,
            seg_policy.allocation[a],
            a,
            explored,
            segment,
            unit,
            digest[16:24],
            now,
            unit_hash=unit_hash,
        )

    def _record(
        self,
        policy: LoadedPolicy,
        propensity: float,
        arm_index: int,
        explored: bool,
        segment: str,
        unit: Unit,
        nonce: bytes | None,
        now: datetime,
        *,
        unit_hash: str | None = None,
    ) -> tuple[DecisionRecord, Choice]:
        arm = policy.arms[arm_index]
        if unit_hash is None and unit.unit_id:
            unit_hash = self._signer.unit_hash(unit.unit_id)
        propensity = float(propensity)
        decision_id = self._signer.mint(
            experiment_id=policy.experiment_id,
            epoch=policy.epoch,
            arm_id=arm.id,
            segment=segment,
            propensity=propensity,
            policy_version=policy.version,
            issued_at=now,
            nonce=nonce,
        )
        record = DecisionRecord(
            id=decision_id,
            experiment_id=policy.experiment_id,
            epoch=policy.epoch,
            arm_id=arm.id,
            segment=segment,
            unit_hash=unit_hash,
            send_id=unit.send_id,
            propensity=propensity,
            explored=explored,
            policy_version=policy.version,
            created_at=now,
            counts_exposure=policy.counts_exposure_at_decision,
        )
        choice = Choice(decision_id, arm, propensity, explored, policy.version, False)
        return record, choice

    def _store_keyed(
        self,
        policy: LoadedPolicy,
        keyed: list[tuple[int, tuple[int, str, str], DecisionRecord, Choice]],
    ) -> dict[int, Choice]:
        # Within one batch the same key may repeat: store it once.
        first_by_key: dict[tuple[int, str, str], DecisionRecord] = {}
        for _, key, record, _ in keyed:
            first_by_key.setdefault(key, record)
        records = list(first_by_key.values())
        with unit_of_work(self._engine, clock=self._clock) as session:
            new_ids = insert_keyed_decisions(session, records)
            stats_repo.add_deltas(
                session, deltas=exposure_deltas([r for r in records if r.id in new_ids])
            )
            # A row just inserted is the record itself: only the keys that were already
            # stored (a repeat, another replica's, a forgotten unit's) are read back.
            stored = {
                key: decisions_repo.KeyedDecision(
                    r.id, r.arm_id, r.propensity, r.explored, r.policy_version, r.holdout
                )
                for key, r in first_by_key.items()
                if r.id in new_ids
            }
            existing = [(k[1], k[2]) for k in first_by_key if k not in stored]
            if existing:
                stored.update(
                    decisions_repo.find_keyed(
                        session, experiment_id=policy.experiment_id, keys=existing
                    )
                )
        out: dict[int, Choice] = {}
        for i, key, _record, fresh in keyed:
            row = stored.get(key)
            if row is None:  # forgotten unit or a race with deletion: serve what we minted
                out[i] = fresh
                continue
            arm = policy.all_arms.get(row.arm_id, fresh.arm)
            choice = Choice(
                row.id, arm, row.propensity, row.explored, row.policy_version, False, row.holdout
            )
            self._keyed.put(key, choice)
            out[i] = choice
        return out

    def _fallback(self, policy: LoadedPolicy, units: Sequence[Unit]) -> list[Choice]:
        """Fail open: answer with the control (or first) arm and log no exposure."""
        arm = policy.fallback
        if arm is None:
            raise NotFound(f"experiment {policy.key!r} has no arm to serve", field="experiment")
        reason = policy.status if policy.status != ExperimentStatus.RUNNING else "no_live_arm"
        metrics.FALLBACKS.labels(policy.key, reason).inc(len(units))
        # No decision id: nothing is logged, so an id could only attach orphans to messages
        # (and tempt integrators to count them). The answer says `tracked: false` instead.
        return [Choice(None, arm, 1.0, False, policy.version, True) for _ in units]
