"""Admin operations (scope admin): replay, dead letters, stats rebuild, privacy."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from service.admin import service as admin
from service.admin.schemas import (
    DeadLetterList,
    DeadLetterOut,
    PurgeOut,
    RebuildOut,
    ReplayIn,
    ReplayOut,
    UnitDeleted,
)
from service.core.deps import AdminKey, RuntimeDep, SessionDep
from service.core.fields import AfterId
from service.measuring.rebuild import rebuild_stats
from service.measuring.replay import replay

router = APIRouter(prefix="/v1", tags=["admin"])


@router.post("/admin/replay", response_model=ReplayOut)
async def replay_payloads(body: ReplayIn, runtime: RuntimeDep, _admin: AdminKey) -> ReplayOut:
    """Re-feed stored raw payloads (all, by source, by time range); idempotent."""
    result = await run_in_threadpool(
        replay, runtime, source=body.source, since=body.since, until=body.until
    )
    return ReplayOut.model_validate(result, from_attributes=True)


@router.get("/admin/dead-letters", response_model=DeadLetterList)
def list_dead_letters(
    session: SessionDep,
    _admin: AdminKey,
    source: str | None = Query(None, max_length=32),
    after: AfterId = 0,
    limit: int = Query(100, ge=1, le=1000),
) -> DeadLetterList:
    rows = admin.dead_letters(session, source=source, after_id=after, limit=limit)
    items = [DeadLetterOut.model_validate(r, from_attributes=True) for r in rows]
    return DeadLetterList(
        dead_letters=items, next_after=items[-1].id if len(items) == limit else None
    )


@router.post("/admin/stats/rebuild", response_model=RebuildOut)
def rebuild(session: SessionDep, _admin: AdminKey) -> RebuildOut:
    return RebuildOut(**rebuild_stats(session))


@router.post("/admin/purge", response_model=PurgeOut)
def purge(session: SessionDep, runtime: RuntimeDep, _admin: AdminKey) -> PurgeOut:
    """Delete raw payloads older than BANDITLOOP_RAW_RETENTION_DAYS."""
    deleted = admin.purge_raw_payloads(session, retention_days=runtime.settings.raw_retention_days)
    return PurgeOut(raw_payloads_deleted=deleted)


@router.delete("/units/{unit_id}", response_model=UnitDeleted)
def delete_unit(
    session: SessionDep,
    runtime: RuntimeDep,
    _admin: AdminKey,
    unit_id: str = Path(min_length=1, max_length=256),
) -> UnitDeleted:
    """Privacy: forget a unit. Its decisions keep their counts but lose the unit (and the
    decider forgets its remembered keyed decisions once that is committed)."""
    return UnitDeleted(decisions_unlinked=admin.forget_unit(session, runtime.signer, unit_id))
