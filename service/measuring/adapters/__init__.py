"""ESP webhook adapters: verify a provider's request, normalize its events.

The route for ``POST /v1/webhooks/{provider}`` does, with the raw body::

    adapter = ADAPTERS[provider]                     # unknown provider: 404
    adapter.verify(headers, body, credentials, now)  # WebhookAuthError: 401
                                                     # WebhookTemporaryError: 503
    batch = adapter.parse(body, headers)             # WebhookPayloadError: malformed_status
    events = flag_machine(batch.events, scanner_click_seconds=...)

See docs/webhooks.md for the per-provider status codes and tolerances.
"""

from service.measuring.adapters.base import (
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
from service.measuring.adapters.braze import BrazeAdapter, BrazeCredentials
from service.measuring.adapters.customerio import CustomerIoAdapter, CustomerIoCredentials
from service.measuring.adapters.generic import GenericAdapter, GenericCredentials
from service.measuring.adapters.machine import SCANNER_USER_AGENTS, flag_machine
from service.measuring.adapters.mailgun import MailgunAdapter, MailgunCredentials
from service.measuring.adapters.postmark import PostmarkAdapter, PostmarkCredentials
from service.measuring.adapters.registry import ADAPTERS, ProviderCredentials
from service.measuring.adapters.sendgrid import SendGridAdapter, SendGridCredentials
from service.measuring.adapters.ses import (
    SesAdapter,
    SesCredentials,
    SnsCertificateStore,
    is_sns_url,
)

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
