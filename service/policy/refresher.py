"""The policy refresher: the lease holder recomputes snapshots; every replica loads them.

Every ``BANDITLOOP_POLICY_REFRESH_SECONDS`` each replica tries to take (or renew) the
``policy-refresher`` lease. The holder recomputes each running experiment's snapshot and
writes it as the next version when its inputs changed (or the last one is getting old).
Every replica then loads the newest versions into its in-memory cache, which is all that
/choose reads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from service.core import leases, metrics
from service.core.clock import SYSTEM_CLOCK, Clock
from service.core.loop_lag import during
from service.core.notify import arm_suspended
from service.core.sessions import Handlers, SnapshotPublished, after_commit, unit_of_work
from service.core.sessions import now as now_of
from service.core.vocabulary import EXPOSURE, ArmStatus
from service.core.worker import PeriodicWorker
from service.experiments import repository as experiments_repo
from service.experiments.arm_status import set_arm_status
from service.measuring import stats_repository as stats_repo
from service.models import Arm, PolicySnapshot
from service.policy import repository as snapshots_repo
from service.policy import schedule
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import ArmInfo, ExperimentInfo
from service.policy.loaded import LoadedPolicy, PolicyCache, load_policy
from service.policy.offload import ComputeProcess
from service.policy.schedule import MAX_SNAPSHOT_AGE
from service.policy.snapshot import SegmentFigures, Snapshot
from service.policy.suspension import arms_to_suspend, suspension_reason

log = logging.getLogger("banditloop.policy")

LEASE_NAME = "policy-refresher"
COMPARED_FIELDS = ("exposures", "successes", "eligible")


def read_policy_inputs(
    session: Session,
    *,
    experiment_id: int,
    now: datetime,
    previous: PolicySnapshot | None = None,
) -> PolicyInputs | None:
    """Read everything one snapshot computation needs."""
    experiment = experiments_repo.get(session, experiment_id=experiment_id)
    if experiment is None:
        return None
    info = ExperimentInfo.of(experiment)
    rows = experiments_repo.arms(session, experiment_id=experiment_id)
    restores = experiments_repo.last_restores(
        session, arm_ids=[a.id for a in rows if a.id is not None and a.status == ArmStatus.LIVE]
    )
    arms = [ArmInfo.of(a, restores.get(a.id or 0)) for a in rows]
    metrics_needed = [EXPOSURE, info.success_metric, *(m for m, _ in info.guardrails)]
    stats = stats_repo.rows_for(
        session, experiment_id=experiment_id, epoch=info.epoch, metrics=metrics_needed
    )
    delays = stats_repo.success_delays(
        session,
        experiment_id=experiment_id,
        epoch=info.epoch,
        metric=info.success_metric,
        now=now,
    )
    return PolicyInputs(
        info, arms, stats, delays, Snapshot.from_json(previous.payload) if previous else None
    )


def publish(
    session: Session,
    *,
    experiment_id: int,
    force: bool = True,
    now: datetime | None = None,
) -> PolicySnapshot | None:
    """Compute an experiment's snapshot and write it as the next version.

    Arms that breach a guardrail are suspended here, with their evidence, in the same
    transaction. With ``force=False`` nothing is written when the inputs are unchanged, the
    delay corrections have not moved materially and the newest snapshot is recent: history
    stays meaningful instead of one row every 2 s. ``now`` defaults to the unit of work's
    time.
    """
    return _publish(session, experiment_id=experiment_id, force=force, now=now)[0]


def republish(session: Session, *, experiment_id: int) -> PolicySnapshot | None:
    """Publish the next snapshot now (arms or settings changed) and install it in this
    replica's cache once the transaction commits."""
    row = publish(session, experiment_id=experiment_id)
    if row is not None:
        after_commit(session, SnapshotPublished(row))
    return row


def _publish(
    session: Session,
    *,
    experiment_id: int,
    force: bool,
    now: datetime | None,
    compute: Callable[..., Snapshot] = compute_snapshot,
) -> tuple[PolicySnapshot | None, Snapshot | None]:
    now = now or now_of(session)
    previous = snapshots_repo.latest(session, experiment_id=experiment_id)
    inputs = read_policy_inputs(session, experiment_id=experiment_id, now=now, previous=previous)
    if inputs is None:
        return None, None
    version = (previous.version if previous else 0) + 1
    rng = np.random.default_rng([experiment_id, version])
    snapshot = compute(inputs, now=now, rng=rng)
    suspended = _apply_guardrail_suspensions(session, experiment_id, snapshot)
    if (
        not force
        and not suspended
        and previous is not None
        and not _changed(previous, inputs.previous, snapshot, now)
    ):
        return None, snapshot
    row = snapshots_repo.insert_next(
        session,
        experiment_id=experiment_id,
        epoch=inputs.experiment.epoch,
        payload=snapshot.to_json(),
    )
    return row, snapshot


def _apply_guardrail_suspensions(session: Session, experiment_id: int, snapshot: Snapshot) -> int:
    def arm(arm_id: int) -> Arm | None:
        return experiments_repo.get_arm(session, experiment_id=experiment_id, arm_id=arm_id)

    to_suspend = arms_to_suspend(snapshot, lambda arm_id: getattr(arm(arm_id), "status", None))
    experiment = experiments_repo.get(session, experiment_id=experiment_id) if to_suspend else None
    for arm_id, breach in to_suspend.items():
        found = arm(arm_id)
        assert found is not None
        assert experiment is not None
        reason = suspension_reason(breach)
        set_arm_status(
            session,
            found,
            ArmStatus.SUSPENDED,
            actor="guardrail",
            reason=reason,
            evidence=breach.to_json(),
        )
        # Sent once the suspension is committed, by whichever session made it.
        after_commit(
            session,
            arm_suspended(experiment.key, arm_id=arm_id, content=found.content, reason=reason),
        )
    if to_suspend:
        session.flush()
    return len(to_suspend)


def _changed(previous: PolicySnapshot, old: Snapshot | None, new: Snapshot, now: datetime) -> bool:
    if now - previous.created_at > MAX_SNAPSHOT_AGE or old is None:
        return True
    if old.experiment != new.experiment or old.arms != new.arms or old.arm_ids != new.arm_ids:
        return True
    if old.segments.keys() != new.segments.keys():
        return True
    if any(
        getattr(old.segments[s], f) != getattr(new.segments[s], f)
        for s in new.segments
        for f in COMPARED_FIELDS
    ):
        return True
    return any(_moved(old.segments[s], new.segments[s]) for s in new.segments)


def _moved(old: SegmentFigures, new: SegmentFigures) -> bool:
    """Did ageing alone move the delay-corrected figures materially?

    With no new event, F(age) still grows, and with it the maturity and the corrected rates.
    A move of a hundredth in maturity, or of a twentieth of the policy's own interval's width
    in an arm's corrected rate, is worth a new version; anything less is noise in the history.
    (The policy's interval, not the reported one: widened for a slow tail, the latter would
    let the rates the allocation rests on move further before a version is published.)
    Reaching full maturity always is: past the window no further refresh is due, so a last
    small step (0.9925 -> 1 under a slow tail) left the report short of 1 for good.
    """
    if old.maturity is None or new.maturity is None or len(old.maturity) != len(new.maturity):
        return old.maturity != new.maturity
    if len(old.posterior_mean) != len(new.posterior_mean):
        return True
    low, high = new.policy_interval()
    width = np.asarray(high, dtype=float) - np.asarray(low, dtype=float)
    if np.any(np.abs(np.subtract(new.maturity, old.maturity)) > 0.01):
        return True
    if any(n == 1.0 and o != 1.0 for o, n in zip(old.maturity, new.maturity, strict=True)):
        return True
    if np.any(
        np.abs(np.subtract(new.posterior_mean, old.posterior_mean)) > np.maximum(width / 20.0, 1e-6)
    ):
        return True
    return bool(np.any(np.abs(np.subtract(new.allocation, old.allocation)) > 0.01))


def _observe_guardrails(key: str, snapshot: Snapshot) -> None:
    """Set banditloop_arm_guardrail_breached for every checked (arm, metric).

    Only live arms are checked, so the snapshot that suspends an arm is the only one that
    names it as breached. Later snapshots leave an ineligible arm's gauge alone (it stays 1
    while the arm is suspended) and set 0 once it is eligible again, e.g. after a restore.
    """
    guardrails = snapshot.guardrails
    if guardrails is None:
        return
    overall = snapshot.overall
    eligible = overall.eligible if overall is not None else None
    for metric in guardrails.rates or {}:
        for i, arm_id in enumerate(snapshot.arm_ids):
            gauge = metrics.GUARDRAIL_BREACHED.labels(key, str(arm_id), metric)
            breach = guardrails.breached.get(arm_id)
            if breach is not None and metric in breach.metrics:
                gauge.set(1)
            elif eligible is not None and eligible[i]:
                gauge.set(0)


class Refresher:
    def __init__(
        self,
        engine: Engine,
        cache: PolicyCache,
        *,
        interval: float,
        lease_seconds: float,
        handlers: Handlers | None = None,
        clock: Clock = SYSTEM_CLOCK,
        compute_process: bool = False,
    ):
        self._engine = engine
        self._clock = clock
        # After-commit handlers for what a computation asks for (a guardrail's notification).
        self._handlers: Handlers = handlers or {}
        self._cache = cache
        self._interval = interval
        self._lease_seconds = max(lease_seconds, interval * 3)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.worker = PeriodicWorker("policy-refresher", self.tick, interval=interval, log=log)
        self._load_lock = threading.Lock()
        self._compute_process = compute_process
        self._offload = ComputeProcess()
        self._compute: Callable[..., Snapshot] = compute_snapshot
        # Lease holder only: what each experiment's last computation saw.
        self._checked: dict[int, schedule.Checked] = {}
        self._written: dict[int, datetime] = {}

    def _transaction(self) -> AbstractContextManager[Session]:
        return unit_of_work(self._engine, self._handlers, clock=self._clock)

    def start(self) -> None:
        if self._compute_process:
            # The worker's computations go to a child process (service.policy.offload).
            self._offload.start()
            self._compute = self._offload
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(timeout=10)
        self._offload.stop()
        self._compute = compute_snapshot
        try:
            with self._transaction() as session:
                leases.release(session, name=LEASE_NAME, holder=self.holder)
        except Exception:  # shutting down: the lease simply expires
            log.debug("could not release the refresher lease", exc_info=True)

    def tick(self, *, now: datetime | None = None) -> None:
        """Take (or renew) the lease in one transaction; recompute if held; reload. The
        whole pass is one ``policy_refresh`` activity for the lag probe's stall counter."""
        with during("policy_refresh"):
            with self._transaction() as session:
                held = leases.try_acquire(
                    session, name=LEASE_NAME, holder=self.holder, seconds=self._lease_seconds
                )
            if held:
                self.recompute_all(now=now)
            self.reload()

    def recompute_all(self, *, now: datetime | None = None) -> int:
        """Recompute the running experiments whose inputs changed or whose corrections aged
        (``service.policy.schedule``): an idle, matured experiment costs a row in three
        statements a refresh, not a transaction and a computation."""
        written = 0
        now = now or self._clock.now()
        with self._transaction() as session:
            fingerprints = schedule.running_fingerprints(session)
        schedule.forget_gone(self._checked, list(fingerprints))
        for experiment_id in schedule.due(fingerprints, self._checked, self._written, now):
            with self._transaction() as session:
                row, payload = _publish(
                    session,
                    experiment_id=experiment_id,
                    force=False,
                    now=now,
                    compute=self._compute,
                )
            if row is not None:
                written += 1
            self._checked[experiment_id] = schedule.Checked(
                fingerprints[experiment_id], now, schedule.next_due(payload, now)
            )
        return written

    def reload(self) -> int:
        """Load every snapshot newer than the cached one; return how many were loaded."""
        with self._load_lock, self._transaction() as session:
            latest = snapshots_repo.latest_versions(session)
            have = self._cache.versions()
            wanted = {eid: v for eid, v in latest.items() if have.get(eid, 0) < v}
            rows = snapshots_repo.get_versions(session, wanted=wanted)
        for row in rows:
            self._install(row)
        return len(rows)

    def load_key(self, key: str) -> LoadedPolicy | None:
        """Cache miss for an experiment key: read its newest snapshot once."""
        with self._transaction() as session:
            experiment = experiments_repo.get_by_key(session, key=key)
            if experiment is None or experiment.id is None:
                return None
            row = snapshots_repo.latest(session, experiment_id=experiment.id)
        if row is None:
            return None
        return self._install(row)

    def install(self, row: PolicySnapshot) -> LoadedPolicy:
        return self._install(row)

    def _install(self, row: PolicySnapshot) -> LoadedPolicy:
        snapshot = Snapshot.from_json(row.payload)
        policy = load_policy(row.experiment_id, row.version, snapshot)
        self._cache.put(policy)
        overall = snapshot.overall
        if overall is not None:
            for i, arm in enumerate(policy.arms):
                labels = (policy.key, str(arm.id))
                metrics.POSTERIOR_MEAN.labels(*labels).set(overall.posterior_mean[i])
                metrics.PROBABILITY_BEST.labels(*labels).set(overall.probability_best[i])
                metrics.ALLOCATION.labels(*labels).set(overall.allocation[i])
        _observe_guardrails(policy.key, snapshot)
        metrics.SNAPSHOT_VERSION.labels(policy.key).set(row.version)
        self._written[row.experiment_id] = row.created_at
        return policy
