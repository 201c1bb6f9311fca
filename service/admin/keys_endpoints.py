"""API key management (scope admin)."""

from __future__ import annotations

from fastapi import APIRouter

from service.admin.keys_schemas import KeyCreate, KeyCreated, KeyList, KeyOut
from service.core.deps import AdminKey, RuntimeDep
from service.core.fields import IdPath
from service.models import ApiKey

router = APIRouter(prefix="/v1/admin/keys", tags=["keys"])


def key_out(row: ApiKey) -> KeyOut:
    assert row.id is not None
    return KeyOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes.split(","),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, runtime: RuntimeDep, _admin: AdminKey) -> KeyCreated:
    row, raw = runtime.api_keys.create(name=body.name, scopes=list(body.scopes))
    return KeyCreated(**key_out(row).model_dump(), key=raw)


@router.get("", response_model=KeyList)
def list_keys(runtime: RuntimeDep, _admin: AdminKey) -> KeyList:
    return KeyList(keys=[key_out(k) for k in runtime.api_keys.list()])


@router.delete("/{key_id}", response_model=KeyOut)
def revoke_key(key_id: IdPath, runtime: RuntimeDep, _admin: AdminKey) -> KeyOut:
    return key_out(runtime.api_keys.revoke(key_id))
