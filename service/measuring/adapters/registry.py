"""The adapter for each ``{provider}`` path segment, and the credential types.

Adapters hold no secrets (credentials are passed to ``verify``); the only
state is the SNS certificate cache inside the SES adapter. An install that
must work offline or fetch differently replaces it at startup, e.g.
``ADAPTERS["ses"] = SesAdapter(SnsCertificateStore(fetcher=None))`` with
``SesCredentials(certificate_dir=...)``.
"""

from __future__ import annotations

from service.measuring.adapters.base import Adapter
from service.measuring.adapters.braze import BrazeAdapter, BrazeCredentials
from service.measuring.adapters.customerio import CustomerIoAdapter, CustomerIoCredentials
from service.measuring.adapters.generic import GenericAdapter, GenericCredentials
from service.measuring.adapters.mailgun import MailgunAdapter, MailgunCredentials
from service.measuring.adapters.postmark import PostmarkAdapter, PostmarkCredentials
from service.measuring.adapters.sendgrid import SendGridAdapter, SendGridCredentials
from service.measuring.adapters.ses import SesAdapter, SesCredentials

ProviderCredentials = (
    SendGridCredentials
    | MailgunCredentials
    | PostmarkCredentials
    | SesCredentials
    | CustomerIoCredentials
    | BrazeCredentials
    | GenericCredentials
)

ADAPTERS: dict[str, Adapter] = {
    "sendgrid": SendGridAdapter(),
    "mailgun": MailgunAdapter(),
    "postmark": PostmarkAdapter(),
    "ses": SesAdapter(),
    "customerio": CustomerIoAdapter(),
    "braze": BrazeAdapter(),
    "generic": GenericAdapter(),
}
