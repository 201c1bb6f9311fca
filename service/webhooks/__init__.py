"""ESP webhook adapters: verify a provider's request, normalize its events.

The route for ``POST /v1/webhooks/{provider}`` does, with the raw body::

    adapter = ADAPTERS[provider]                     # unknown provider: 404
    adapter.verify(headers, body, credentials, now)  # WebhookAuthError: 401
                                                     # WebhookTemporaryError: 503
    batch = adapter.parse(body, headers)             # WebhookPayloadError: malformed_status
    events = flag_machine(batch.events, scanner_click_seconds=...)

See docs/webhooks.md for the per-provider status codes and tolerances.
"""

from service.webhooks.base import (
    Adapter,
    ControlMessage,
    EventType,
    NormalizedEvent,
    ParsedBatch,
    Poison,
    WebhookAuthError,
    WebhookNotConfiguredError,
    WebhookPayloadError,
    WebhookTemporaryError,
    decision_ids_from,
    split_setting,
)
from service.webhooks.braze import BrazeAdapter, BrazeCredentials
from service.webhooks.customerio import CustomerIoAdapter, CustomerIoCredentials
from service.webhooks.generic import GenericAdapter, GenericCredentials
from service.webhooks.machine import SCANNER_USER_AGENTS, flag_machine
from service.webhooks.mailgun import MailgunAdapter, MailgunCredentials
from service.webhooks.postmark import PostmarkAdapter, PostmarkCredentials
from service.webhooks.registry import ADAPTERS, ProviderCredentials
from service.webhooks.sendgrid import SendGridAdapter, SendGridCredentials
from service.webhooks.ses import SesAdapter, SesCredentials, SnsCertificateStore, is_sns_url

__all__ = [
    "ADAPTERS",
    "SCANNER_USER_AGENTS",
    "Adapter",
    "BrazeAdapter",
    "BrazeCredentials",
    "ControlMessage",
    "CustomerIoAdapter",
    "CustomerIoCredentials",
    "EventType",
    "GenericAdapter",
    "GenericCredentials",
    "MailgunAdapter",
    "MailgunCredentials",
    "NormalizedEvent",
    "ParsedBatch",
    "Poison",
    "PostmarkAdapter",
    "PostmarkCredentials",
    "ProviderCredentials",
    "SendGridAdapter",
    "SendGridCredentials",
    "SesAdapter",
    "SesCredentials",
    "SnsCertificateStore",
    "WebhookAuthError",
    "WebhookNotConfiguredError",
    "WebhookPayloadError",
    "WebhookTemporaryError",
    "decision_ids_from",
    "flag_machine",
    "is_sns_url",
    "split_setting",
]
