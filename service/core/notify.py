"""Outgoing notifications: proposals wait for review, a guardrail suspended an arm, a loop
run failed. Slack-compatible JSON (`text` plus `blocks`, with the event's facts under
`banditloop`), signed, posted by one background thread with retries and backoff.

Whoever notifies only puts a message on a bounded queue: the loop and the refresher never
wait for the receiver, and a full queue drops the newest message (counted) rather than
block. Signature: ``X-Banditloop-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``
under ``BANDITLOOP_NOTIFY_WEBHOOK_SECRET``, with ``X-Banditloop-Timestamp`` (Unix seconds),
so a receiver can refuse replays and forgeries; each secret of a comma-separated rotation
list signs, in ``v1=`` entries separated by commas.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.core import metrics
from service.core.settings import Settings, split_secrets

log = logging.getLogger("banditloop.notify")

QUEUE_SIZE = 1000
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Notification:
    event: str  # proposals_waiting, arm_suspended, loop_run_failed
    experiment: str
    text: str  # one line a person reads in the channel
    facts: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": self.text}}],
            "banditloop": {"event": self.event, "experiment": self.experiment, **self.facts},
        }


def sign(body: bytes, timestamp: int, secrets: tuple[str, ...]) -> str:
    message = str(timestamp).encode() + b"." + body
    return ",".join(
        "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest() for secret in secrets
    )


class Notifier:
    """The queue and the thread that empties it. Disabled (every call a no-op) without a
    URL, so nothing starts and nothing is queued in the default set-up."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = settings.notify_webhook_url
        self._secrets = split_secrets(settings.notify_webhook_secret)
        self._attempts = settings.notify_max_attempts
        self._backoff = settings.notify_backoff_seconds
        self._timeout = settings.notify_timeout_seconds
        self._clock = clock
        self._transport = transport
        self._queue: queue.Queue[Notification] = queue.Queue(maxsize=QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def send(self, notification: Notification) -> None:
        """Queue it for delivery; never blocks, never raises."""
        if not self.enabled:
            return
        try:
            self._queue.put_nowait(notification)
        except queue.Full:
            log.warning("notification queue full: dropped %s", notification.event)
            metrics.NOTIFICATIONS.labels(notification.event, "dropped").inc()

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, *, drain_seconds: float = 2.0) -> None:
        """Give queued messages a moment to go out, then stop (the rest are dropped)."""
        if self._thread is None:
            return
        deadline = time.monotonic() + drain_seconds
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(timeout=self._timeout + 1)
        self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
            while not self._stop.is_set():
                try:
                    notification = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    outcome = self._deliver(client, notification)
                except Exception:  # a bug here must not end the thread
                    log.exception("notification %s failed", notification.event)
                    outcome = "failed"
                metrics.NOTIFICATIONS.labels(notification.event, outcome).inc()

    def _deliver(self, client: httpx.Client, notification: Notification) -> str:
        body = json.dumps(notification.payload(), separators=(",", ":")).encode()
        for attempt in range(1, self._attempts + 1):
            timestamp = int(self._clock())
            headers = {"Content-Type": "application/json", "X-Banditloop-Timestamp": str(timestamp)}
            if self._secrets:
                headers["X-Banditloop-Signature"] = sign(body, timestamp, self._secrets)
            retry_after: float | None = None
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return "delivered"
                if response.status_code not in RETRYABLE:
                    log.warning(
                        "notification %s refused with %s", notification.event, response.status_code
                    )
                    return "refused"
                reason = f"HTTP {response.status_code}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt == self._attempts:
                log.warning(
                    "notification %s given up after %s: %s", notification.event, attempt, reason
                )
                return "failed"
            # Exponential backoff (1, 2, 4, ... times the base), or the receiver's Retry-After.
            delay = retry_after if retry_after is not None else self._backoff * 2 ** (attempt - 1)
            if self._stop.wait(min(delay, MAX_BACKOFF_SECONDS)):
                return "failed"
        return "failed"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# -- what is worth telling --------------------------------------------------------------


def proposals_waiting(experiment: str, *, new: int, pending: int, run_id: int) -> Notification:
    plural = "s" if new != 1 else ""
    return Notification(
        event="proposals_waiting",
        experiment=experiment,
        text=f"*{experiment}*: {new} new proposal{plural} wait for review "
        f"({pending} pending in all, from loop run {run_id}).",
        facts={"new_proposals": new, "pending_proposals": pending, "loop_run_id": run_id},
    )


def arm_suspended(experiment: str, *, arm_id: int, content: str, reason: str) -> Notification:
    return Notification(
        event="arm_suspended",
        experiment=experiment,
        text=f"*{experiment}*: a guardrail suspended arm {arm_id} ({content!r}): {reason}",
        facts={"arm_id": arm_id, "content": content, "reason": reason},
    )


def loop_run_failed(experiment: str, *, run_id: int, error: str | None) -> Notification:
    return Notification(
        event="loop_run_failed",
        experiment=experiment,
        text=f"*{experiment}*: loop run {run_id} failed: {error or 'no error recorded'}",
        facts={"loop_run_id": run_id, "error": error},
    )
