"""Small helpers that create things through the real API."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient


def create_random_experiment(
    client: TestClient,
    admin: dict[str, str],
    *,
    arms: int = 3,
    key: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    body = {
        "key": key or f"exp-{uuid.uuid4().hex[:10]}",
        "name": "Spring sale subject lines",
        "arms": [
            {
                "content": f"Subject line {i}",
                "tags": ["question"] if i % 2 else [],
                "control": i == 0,
            }
            for i in range(arms)
        ],
        **settings,
    }
    response = client.post("/v1/experiments", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()
