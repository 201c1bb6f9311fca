"""Choose arms for one unit or a batch from the loaded policy; never waits on the database
to decide. Keyed decisions (unit and send id) are idempotent: stored under a unique key,
read back, and remembered in a small in-memory cache."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Engine

from bandits import sample_arms, uniforms_from_digest, uniforms_from_digests
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


# Named tuples, not frozen dataclasses: a batch makes a thousand of each, and a frozen
# dataclass's constructor (one ``object.__setattr__`` per field) cost about five times more.
class Unit(NamedTuple):
    unit_id: str | None = None
    send_id: str | None = None
    context: Mapping[str, Any] | None = None

    @property
    def keyed(self) -> bool:
        return bool(self.unit_id) and bool(self.send_id)


class Choice(NamedTuple):
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


# A keyed digest's bytes (HMAC-SHA256), and the number of keyed units of one segment from
# which the batch path's array set-up costs less than deciding them one by one.
_DIGEST_BYTES = 32
_VECTOR_FROM = 8


def _groups(
    policy: LoadedPolicy, units: Sequence[Unit]
) -> dict[tuple[str, bool], tuple[SegmentPolicy, list[int]]]:
    """The units' positions per (segment, keyed), each with the segment's policy."""
    groups: dict[tuple[str, bool], tuple[SegmentPolicy, list[int]]] = {}
    if not any(u.context for u in units):  # the usual batch: one segment
        segment, seg_policy = policy.segment_for(None)
        for i, unit in enumerate(units):
            group = groups.get((segment, unit.keyed))
            if group is None:
                group = groups[(segment, unit.keyed)] = (seg_policy, [])
            group[1].append(i)
        return groups
    for i, unit in enumerate(units):
        segment, seg_policy = policy.segment_for(unit.context)
        group = groups.get((segment, unit.keyed))
        if group is None:
            group = groups[(segment, unit.keyed)] = (seg_policy, [])
        group[1].append(i)
    return groups


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

    def get_many(self, keys: Sequence[tuple[int, str, str]]) -> list[Choice | None]:
        """``get`` of each key, under one hold of the lock (a batch's thousand keys)."""
        items = self._items
        with self._lock:
            found = [items.get(key) for key in keys]
            for key, choice in zip(keys, found, strict=True):
                if choice is not None:
                    items.move_to_end(key)
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

    def put_many(self, entries: Iterable[tuple[tuple[int, str, str], Choice]]) -> None:
        if self._size <= 0:
            return
        items = self._items
        with self._lock:
            for key, choice in entries:
                items[key] = choice
                items.move_to_end(key)
            for _ in range(len(items) - self._size):
                items.popitem(last=False)


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
        if len(units) == 1:
            if units[0].keyed:
                return [self._one_keyed(policy, units[0], now)]
            return [self._one_unkeyed(policy, units[0], now)]
        choices: list[Choice | None] = [None] * len(units)
        records: list[DecisionRecord] = []
        stored: list[tuple[int, tuple[int, str, str], DecisionRecord, Choice]] = []
        for (segment, keyed), (seg_policy, indexes) in _groups(policy, units).items():
            members = [units[i] for i in indexes]
            if not keyed:
                found, made = self._unkeyed(policy, seg_policy, segment, members, now)
                records += found
                for i, choice in zip(indexes, made, strict=True):
                    choices[i] = choice
                continue
            keys, cached = self._cached(policy, members)
            missed = [j for j, choice in enumerate(cached) if choice is None]
            for i, hit in zip(indexes, cached, strict=True):
                choices[i] = hit
            if not missed:
                continue
            if len(missed) == len(members):
                pending = self._keyed_batch(policy, seg_policy, segment, members, keys, now)
            else:
                pending = self._keyed_batch(
                    policy,
                    seg_policy,
                    segment,
                    [members[j] for j in missed],
                    [keys[j] for j in missed],
                    now,
                )
                indexes = [indexes[j] for j in missed]
            stored += zip(indexes, *pending, strict=True)

        if stored:
            for i, choice in self._store_keyed(policy, stored).items():
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
        # ``mint``, not the batch's numpy minting, whose set-up costs more than one id.
        decision_id = self._signer.mint(
            experiment_id=policy.experiment_id,
            epoch=policy.epoch,
            arm_id=arm.id,
            segment=segment,
            propensity=propensity,
            policy_version=policy.version,
            issued_at=now,
        )
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

    def _one_keyed(self, policy: LoadedPolicy, unit: Unit, now: datetime) -> Choice:
        """A single keyed decision (GET /v1/choose, a render-time send): what ``choose``
        does for a batch of one, without the batch's grouping and arrays (they tripled a
        cache hit's cost)."""
        assert unit.unit_id is not None
        assert unit.send_id is not None
        segment, seg_policy = policy.segment_for(unit.context)
        unit_hash = self._signer.unit_hash(unit.unit_id)
        key = (policy.experiment_id, unit_hash, unit.send_id)
        choice = self._keyed.get(key)
        if choice is None:
            record, fresh = self._keyed_choice(policy, seg_policy, unit, unit_hash, segment, now)
            choice = self._store_keyed(policy, [(0, key, record, fresh)])[0]
        self._count(policy.key, choice.arm.id, choice.explored, 1)
        return choice

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
    ) -> tuple[list[DecisionRecord], list[Choice]]:
        """The records and answers of one segment's unkeyed units: the arms drawn at once
        (``sample_arms``), the ids minted together (``DecisionSigner.mint_batch``)."""
        arm_index, explored = self._sample(seg_policy, len(units))
        hashes = iter(self._signer.unit_hashes(u.unit_id for u in units if u.unit_id))
        return self._made(
            policy,
            segment,
            now,
            arms=[policy.arms[a] for a in arm_index],
            propensities=seg_policy.allocation[arm_index].tolist(),
            explored=explored,
            holdout=None,
            unit_hashes=[next(hashes) if u.unit_id else None for u in units],
            send_ids=[u.send_id for u in units],
            nonces=None,
        )

    def _cached(
        self, policy: LoadedPolicy, units: Sequence[Unit]
    ) -> tuple[list[tuple[int, str, str]], list[Choice | None]]:
        """Keyed units' keys (experiment, unit hash, send id), and what the cache holds."""
        experiment_id = policy.experiment_id
        hashes = self._signer.unit_hashes(u.unit_id or "" for u in units)
        keys = [(experiment_id, h, u.send_id or "") for h, u in zip(hashes, units, strict=True)]
        return keys, self._keyed.get_many(keys)

    def _keyed_batch(
        self,
        policy: LoadedPolicy,
        seg_policy: SegmentPolicy,
        segment: str,
        units: Sequence[Unit],
        keys: Sequence[tuple[int, str, str]],
        now: datetime,
    ) -> tuple[list[tuple[int, str, str]], list[DecisionRecord], list[Choice]]:
        """The records and answers of one segment's keyed units missing from the cache:
        each unit's digest gives its uniforms and nonce (so the arm and the id are the same
        on every replica, in every batch and by /v1/choose); one unit takes the scalar
        path (``_keyed_choice``), a batch the same rule over arrays."""
        if len(units) < _VECTOR_FROM:
            pairs = [
                self._keyed_choice(policy, seg_policy, unit, key[1], segment, now)
                for unit, key in zip(units, keys, strict=True)
            ]
            return list(keys), [r for r, _ in pairs], [c for _, c in pairs]
        hashes = [key[1] for key in keys]
        digests = self._signer.keyed_digests(
            policy.experiment_id, ((key[1], key[2]) for key in keys)
        )
        arm_index, explored_flags = seg_policy.sampler.from_uniform_arrays(
            *uniforms_from_digests(digests, _DIGEST_BYTES)
        )
        arms = [policy.arms[a] for a in arm_index]
        propensities: list[float] = seg_policy.allocation[arm_index].tolist()
        explored: list[bool] = explored_flags.tolist()
        holdout: list[bool] | None = None
        held_out_arm = holdout_arm(policy)
        if held_out_arm is not None:
            holdout = [in_holdout(h, policy.holdout_share) for h in hashes]
            for j in (j for j, held in enumerate(holdout) if held):
                arms[j], propensities[j], explored[j] = held_out_arm, 1.0, False
        nonces = np.frombuffer(digests, dtype=np.uint8).reshape(-1, _DIGEST_BYTES)[:, 16:24]
        records, choices = self._made(
            policy,
            segment,
            now,
            arms=arms,
            propensities=propensities,
            explored=explored,
            holdout=holdout,
            unit_hashes=hashes,
            send_ids=[key[2] for key in keys],
            nonces=nonces.tobytes(),
        )
        return list(keys), records, choices

    def _made(
        self,
        policy: LoadedPolicy,
        segment: str,
        now: datetime,
        *,
        arms: Sequence[ServingArm],
        propensities: Sequence[float],
        explored: Sequence[bool] | np.ndarray[Any, np.dtype[np.bool_]],
        holdout: Sequence[bool] | None,
        unit_hashes: Sequence[str | None],
        send_ids: Sequence[str | None],
        nonces: bytes | None,
    ) -> tuple[list[DecisionRecord], list[Choice]]:
        """Decisions of one segment from their columns: ids minted together, records and
        answers built as tuples straight from the columns."""
        n = len(arms)
        arm_ids = [arm.id for arm in arms]
        ids = self._signer.mint_batch(
            experiment_id=policy.experiment_id,
            epoch=policy.epoch,
            segment=segment,
            policy_version=policy.version,
            issued_at=now,
            arm_ids=arm_ids,
            propensities=propensities,
            nonces=nonces,
        )
        flags = explored.tolist() if isinstance(explored, np.ndarray) else explored
        held: Iterable[bool] = repeat(False, n) if holdout is None else holdout
        records = list(
            map(
                DecisionRecord._make,
                zip(
                    ids,
                    repeat(policy.experiment_id, n),
                    repeat(policy.epoch, n),
                    arm_ids,
                    repeat(segment, n),
                    unit_hashes,
                    send_ids,
                    propensities,
                    flags,
                    repeat(policy.version, n),
                    repeat(now, n),
                    repeat(policy.counts_exposure_at_decision, n),
                    held,
                    strict=True,
                ),
            )
        )
        held = repeat(False, n) if holdout is None else holdout
        choices = list(
            map(
                Choice._make,
                zip(
                    ids,
                    arms,
                    propensities,
                    flags,
                    repeat(policy.version, n),
                    repeat(False, n),
                    held,
                    strict=True,
                ),
            )
        )
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
        # Within one batch the same key may repeat: store it once (its first record).
        first: dict[tuple[int, str, str], tuple[DecisionRecord, Choice]] = {}
        for _, key, record, choice in keyed:
            if key not in first:
                first[key] = (record, choice)
        records = [record for record, _ in first.values()]
        with unit_of_work(self._engine, clock=self._clock) as session:
            new_ids = insert_keyed_decisions(session, records)
            all_new = len(new_ids) == len(records)
            stats_repo.add_deltas(
                session,
                deltas=exposure_deltas(
                    records if all_new else [r for r in records if r.id in new_ids]
                ),
            )
            # A row just inserted is the record itself: only the keys that were already
            # stored (a repeat, another replica's, a forgotten unit's) are read back.
            existing = (
                []
                if all_new
                else [(k[1], k[2]) for k, (r, _) in first.items() if r.id not in new_ids]
            )
            found = (
                decisions_repo.find_keyed(
                    session, experiment_id=policy.experiment_id, keys=existing
                )
                if existing
                else {}
            )
        answers: dict[tuple[int, str, str], Choice] = {}
        for key, (record, fresh) in first.items():
            if record.id in new_ids:
                answers[key] = fresh
                continue
            row = found.get(key)
            if row is None:  # forgotten unit or a race with deletion: serve what we minted
                continue
            arm = policy.all_arms.get(row.arm_id, fresh.arm)
            answers[key] = Choice(
                row.id, arm, row.propensity, row.explored, row.policy_version, False, row.holdout
            )
        self._keyed.put_many(answers.items())
        return {i: answers.get(key, fresh) for i, key, _record, fresh in keyed}

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
