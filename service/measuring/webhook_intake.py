"""POST /v1/webhooks/{provider}: verify from the raw bytes, parse, then the one pipeline."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from service.core.errors import NotFound
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.measuring.adapters import (
    ADAPTERS,
    BrazeCredentials,
    CustomerIoCredentials,
    GenericCredentials,
    MailgunCredentials,
    PostmarkCredentials,
    SendGridCredentials,
    SesCredentials,
    WebhookPayloadError,
    flag_machine,
    is_sns_url,
)
from service.measuring.adapters.base import Adapter, ParsedBatch
from service.measuring.pipeline import IngestResult
from service.measuring.service import ingest_payload, store_undecodable

log = logging.getLogger("banditloop.webhooks")

# Headers worth keeping beside the raw body for replay and audits (never Authorization).
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-amz-sns-message-type",
    "x-amz-sns-topic-arn",
    "x-twilio-email-event-webhook-timestamp",
    "x-cio-timestamp",
)


def credentials_for(provider: str, settings: Settings) -> Any:
    """Map the BANDITLOOP_* settings onto the adapter's credential object."""
    if provider == "sendgrid":
        return SendGridCredentials.from_setting(settings.sendgrid_public_key)
    if provider == "mailgun":
        return MailgunCredentials.from_setting(settings.mailgun_signing_key)
    if provider == "postmark":
        return PostmarkCredentials.from_settings(
            settings.postmark_username, settings.postmark_password
        )
    if provider == "ses":
        return SesCredentials.from_setting(
            settings.ses_topic_arns, certificate_dir=settings.ses_certificate_dir or None
        )
    if provider == "customerio":
        return CustomerIoCredentials.from_setting(settings.customerio_signing_key)
    if provider == "braze":
        return BrazeCredentials.from_setting(settings.braze_token)
    return GenericCredentials.from_setting(settings.generic_webhook_secret)


def adapter_for(provider: str) -> Adapter:
    adapter = ADAPTERS.get(provider)
    if adapter is None:
        known = ", ".join(sorted(ADAPTERS))
        raise NotFound(f"unknown provider {provider!r}; known: {known}", field="provider")
    return adapter


@dataclass(frozen=True)
class WebhookOutcome:
    status: int
    body: dict[str, Any]


def parse_batch(
    adapter: Adapter, body: bytes, headers: dict[str, str], settings: Settings
) -> ParsedBatch:
    batch = adapter.parse(body, headers)
    batch.events = flag_machine(batch.events, scanner_click_seconds=settings.scanner_click_seconds)
    return batch


def receive(
    runtime: Runtime, provider: str, headers: dict[str, str], body: bytes
) -> WebhookOutcome:
    """Verify, parse and ingest one webhook request (runs in a worker thread)."""
    adapter = adapter_for(provider)
    adapter.verify(headers, body, credentials_for(provider, runtime.settings), runtime.clock.now())
    kept = {k: headers[k] for k in KEPT_HEADERS if k in headers}
    try:
        batch = parse_batch(adapter, body, headers, runtime.settings)
    except WebhookPayloadError as exc:
        store_undecodable(runtime, source=provider, headers=kept, body=body, reason=str(exc))
        return WebhookOutcome(
            adapter.malformed_status,
            {"error": {"code": "malformed", "message": str(exc), "details": None}},
        )
    if batch.control is not None:
        return _control(runtime, batch)
    result: IngestResult = ingest_payload(
        runtime,
        source=provider,
        headers=kept,
        body=body,
        events=batch.events,
        poison=batch.poison,
    )
    return WebhookOutcome(200, result.body())


def _control(runtime: Runtime, batch: ParsedBatch) -> WebhookOutcome:
    control = batch.control
    assert control is not None
    if control.confirm_url and runtime.settings.ses_auto_confirm:
        if not is_sns_url(control.confirm_url):  # the adapter checks too; never fetch elsewhere
            return WebhookOutcome(200, {"control": control.kind, "confirmed": False})
        try:
            httpx.get(control.confirm_url, timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("could not confirm the SNS subscription: %s", exc)
            return WebhookOutcome(
                503,
                {
                    "error": {
                        "code": "unavailable",
                        "message": "could not confirm the subscription; retry",
                        "details": None,
                    }
                },
            )
        log.info("confirmed SNS subscription for %s", control.topic_arn)
        return WebhookOutcome(200, {"control": control.kind, "confirmed": True})
    return WebhookOutcome(200, {"control": control.kind, "confirmed": False})
