"""Outgoing notifications to a real local HTTP receiver: signed Slack-compatible JSON,
retried with backoff, never holding up the loop; proposals waiting, a failed run and a
guardrail's suspension each notify."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.core import metrics
from service.core.notify import Notification, Notifier
from service.core.runtime import Runtime
from service.core.settings import Settings
from simulation.copywriter_server import SERVER_ERROR, CopywriterControl
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, later
from tests.service.loop_fixtures import llm_settings, run_loop, seed_experiment, serve_copywriter
from tests.service.policy.test_policy import _events

SECRET = "notify-secret-0123456789abcdef"


@dataclass
class Receiver:
    """A webhook receiver on a free port: answers `statuses` in turn (then 200), records
    every request, and can hold requests until released."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.received)} of {count} notifications arrived")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            with state.lock:
                state.received.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                status = state.statuses.pop(0) if state.statuses else 200
            state.arrived.set()
            if state.hold is not None:
                state.hold.wait(10)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            state.answered.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    server.shutdown()
    server.server_close()


def _notify_settings(settings: Settings, receiver: Receiver, **extra: Any) -> Settings:
    return settings.model_copy(
        update={
            "notify_webhook_url": receiver.url,
            "notify_webhook_secret": SECRET,
            "notify_backoff_seconds": 0.01,
            "notify_max_attempts": 4,
            **extra,
        }
    )


def _verified(request: dict[str, Any]) -> dict[str, Any]:
    """The payload, after checking its signature as a receiver would."""
    timestamp = request["headers"]["x-banditloop-timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert request["headers"]["x-banditloop-signature"] == f"v1={expected}"
    assert request["headers"]["content-type"] == "application/json"
    payload: dict[str, Any] = json.loads(request["body"])
    return payload


def _count(event: str, outcome: str) -> float:
    return metrics.NOTIFICATIONS.labels(event, outcome)._value.get()


def test_retried_with_backoff_until_delivered_and_signed(settings: Settings, receiver: Receiver):
    receiver.statuses = [503, 500, 429]
    notifier = Notifier(_notify_settings(settings, receiver))
    before = _count("loop_run_failed", "delivered")
    notifier.start()
    try:
        notifier.send(Notification("loop_run_failed", "spring", "*spring*: run 3 failed"))
        requests = receiver.wait_for(4)
    finally:
        notifier.stop()
    payloads = [_verified(r) for r in requests]
    assert payloads[0] == {
        "text": "*spring*: run 3 failed",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*spring*: run 3 failed"}}
        ],
        "banditloop": {"event": "loop_run_failed", "experiment": "spring"},
    }
    assert all(p == payloads[0] for p in payloads)  # the same message, re-signed per try
    assert _count("loop_run_failed", "delivered") == before + 1


def test_a_refusal_is_not_retried_and_attempts_are_bounded(settings: Settings, receiver: Receiver):
    receiver.statuses = [400] + [503] * 10
    notifier = Notifier(_notify_settings(settings, receiver, notify_max_attempts=3))
    refused, failed = _count("proposals_waiting", "refused"), _count("arm_suspended", "failed")
    notifier.start()
    try:
        notifier.send(Notification("proposals_waiting", "spring", "one"))
        notifier.send(Notification("arm_suspended", "spring", "two"))
        receiver.wait_for(4)
        time.sleep(0.2)  # room for a fifth request, which must not come
    finally:
        notifier.stop()
    assert len(receiver.received) == 4  # 1 refused + 3 tries of the second
    assert _count("proposals_waiting", "refused") == refused + 1
    assert _count("arm_suspended", "failed") == failed + 1


def test_without_a_url_nothing_is_started_or_sent(settings: Settings):
    notifier = Notifier(settings)
    notifier.start()
    notifier.send(Notification("loop_run_failed", "spring", "nobody listens"))
    assert not notifier.enabled
    assert notifier._thread is None
    assert notifier._queue.empty()


def test_production_refuses_a_webhook_url_without_a_real_secret():
    base = {"mode": "production", "signing_keys": "k1:" + "s" * 32, "_env_file": None}
    with pytest.raises(ValueError, match="NOTIFY_WEBHOOK_SECRET"):
        Settings(**base, notify_webhook_url="https://hooks.example/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NOTIFY_WEBHOOK_SECRET"):
        Settings(  # type: ignore[arg-type]
            **base, notify_webhook_url="https://hooks.example/x", notify_webhook_secret="changeme"
        )
    Settings(**base, notify_webhook_url="https://hooks.example/x", notify_webhook_secret=SECRET)  # type: ignore[arg-type]


# -- through the service ------------------------------------------------------------------


@pytest.fixture(scope="module")
def copywriter_server() -> Iterator[tuple[str, CopywriterControl]]:
    yield from serve_copywriter()


@pytest.fixture
def receiver_settings(
    settings: Settings, receiver: Receiver, copywriter_server: tuple[str, CopywriterControl]
) -> Settings:
    copywriter_server[1].reset()
    return _notify_settings(llm_settings(settings, copywriter_server[0]), receiver)


@pytest.fixture
def runtime(receiver_settings: Settings, engine_for: Any) -> Iterator[Runtime]:
    from tests.conftest import empty_tables

    rt = Runtime(receiver_settings, engine=engine_for)
    yield rt
    empty_tables(engine_for)


def test_proposals_waiting_notify_without_holding_up_the_run(
    client: TestClient, admin, decide, ingest, runtime: Runtime, receiver: Receiver
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    receiver.hold = threading.Event()  # the receiver takes the post and does not answer
    run = run_loop(client, admin, exp["key"])
    # The run has answered while the receiver still holds its notification unanswered.
    assert not receiver.answered.is_set()
    assert receiver.arrived.wait(10)
    receiver.hold.set()
    pending = client.get(
        "/v1/proposals", params={"status": "pending", "experiment": exp["key"]}, headers=admin
    ).json()["proposals"]
    assert pending
    payload = _verified(receiver.wait_for(1)[0])
    assert payload["banditloop"] == {
        "event": "proposals_waiting",
        "experiment": exp["key"],
        "new_proposals": len(pending),
        "pending_proposals": len(pending),
        "loop_run_id": run["id"],
    }
    assert f"{len(pending)} new proposals wait for review" in payload["text"]


def test_a_failed_loop_run_notifies(
    client: TestClient,
    admin,
    decide,
    ingest,
    runtime: Runtime,
    receiver: Receiver,
    copywriter_server: tuple[str, CopywriterControl],
):
    exp = seed_experiment(client, admin, decide, ingest, runtime)
    copywriter_server[1].set_mode(SERVER_ERROR)
    run = run_loop(client, admin, exp["key"])
    assert run["status"] == "failed"
    payload = _verified(receiver.wait_for(1)[0])
    assert payload["banditloop"]["event"] == "loop_run_failed"
    assert payload["banditloop"]["loop_run_id"] == run["id"]
    assert payload["banditloop"]["error"] == run["error"]


def test_a_guardrail_suspension_notifies(
    client: TestClient, admin, decide, ingest, runtime: Runtime, receiver: Receiver
):
    exp = create_random_experiment(client, admin, arms=3, min_exposures=200, min_successes=1)
    arms = [a["id"] for a in exp["arms"]]
    trap = arms[1]
    decisions = decide_many(client, decide, runtime, exp["key"], 3000)
    unsubs = _events(decisions, {arms[0]: 100, trap: 8, arms[2]: 100}, "unsubscribe", "u")
    assert client.post("/v1/events", json=unsubs, headers=ingest).status_code == 200
    runtime.refresher.tick(now=later())
    payload = _verified(receiver.wait_for(1)[0])
    facts = payload["banditloop"]
    assert facts["event"] == "arm_suspended"
    assert facts["experiment"] == exp["key"]
    assert facts["arm_id"] == trap
    assert facts["reason"].startswith("guardrail breached: unsubscribe")
    runtime.refresher.tick(now=later())  # already suspended: no second message
    time.sleep(0.2)
    assert len(receiver.received) == 1
