"""Invalid inputs for every adapter: each must fail in the documented way.

Unauthenticated requests raise WebhookAuthError (401), never anything else;
unparseable bodies raise WebhookPayloadError; odd events become poison.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from service.measuring.adapters import (
    ADAPTERS,
    BrazeCredentials,
    CustomerIoCredentials,
    GenericCredentials,
    MailgunCredentials,
    PostmarkCredentials,
    SendGridCredentials,
    SesCredentials,
    WebhookAuthError,
    WebhookPayloadError,
)
from tests.service.measuring.adapters.signers import NOW, NOW_TS, TOPIC_ARN

CREDENTIALS: dict[str, Any] = {
    "sendgrid": SendGridCredentials(
        public_keys=(
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcw"
            "HBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
        )
    ),
    "mailgun": MailgunCredentials(("key",)),
    "postmark": PostmarkCredentials(("user",), ("pass",)),
    "ses": SesCredentials((TOPIC_ARN,)),
    "customerio": CustomerIoCredentials(("key",)),
    "braze": BrazeCredentials(("token",)),
    "generic": GenericCredentials(("secret",)),
}

GARBAGE_BODIES = [b"", b"\xff\xfe\x00", b"not json", b"{", b"null", b"[]", b"{}", b"[1,2,3]"]

# Header sets that carry something, but never valid authentication.
GARBAGE_HEADERS: list[dict[str, str]] = [
    {},
    {"authorization": "Basic"},
    {"authorization": "Bearer"},
    {"authorization": "Bearer token-but-wrong"},
    {"x-twilio-email-event-webhook-signature": "!!", "x-twilio-email-event-webhook-timestamp": "x"},
    {
        "x-twilio-email-event-webhook-signature": "MEUCIQ==",
        "x-twilio-email-event-webhook-timestamp": str(NOW_TS),
    },
    {"x-cio-signature": "00", "x-cio-timestamp": "-1"},
    {"x-cio-signature": "00", "x-cio-timestamp": "99999999999999999999"},
    {"x-banditloop-signature": "t=,v1="},
    {"x-banditloop-signature": f"t={NOW_TS},v1=zz"},
]


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
@pytest.mark.parametrize("body", GARBAGE_BODIES)
@pytest.mark.parametrize("headers", GARBAGE_HEADERS)
def test_garbage_is_never_authenticated(
    provider: str, body: bytes, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookAuthError):
        ADAPTERS[provider].verify(headers, body, CREDENTIALS[provider], NOW)


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_wrong_credentials_type_is_a_programming_error(provider: str) -> None:
    other = "generic" if provider != "generic" else "braze"
    with pytest.raises(TypeError):
        ADAPTERS[provider].verify({}, b"{}", CREDENTIALS[other], NOW)


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
@pytest.mark.parametrize("body", [b"", b"\xff\xfe\x00", b"not json", b"{"])
def test_unparseable_body_is_a_payload_error(provider: str, body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        ADAPTERS[provider].parse(body, {})


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("sendgrid", b'[null, 1, "x", [], {}]'),
        ("postmark", b'[null, 1, "x", [], {}]'),
        ("customerio", b'[null, 1, "x", [], {}]'),
        ("braze", b'{"events": [null, 1, "x", [], {}]}'),
        ("generic", b'[null, 1, "x", [], {}]'),
    ],
)
def test_events_of_the_wrong_shape_are_poison_not_errors(provider: str, body: bytes) -> None:
    batch = ADAPTERS[provider].parse(body, {})
    assert batch.events == []
    assert [poison.index for poison in batch.poison] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "timestamp",
    [
        "-5",
        "1e9",
        "0x10",
        " ",
        "1772452800.5",
        str(NOW_TS + int(timedelta(hours=1).total_seconds())),
    ],
)
def test_odd_generic_timestamps_are_rejected(timestamp: str) -> None:
    headers = {"x-banditloop-signature": f"t={timestamp},v1=" + "0" * 64}
    with pytest.raises(WebhookAuthError):
        ADAPTERS["generic"].verify(headers, b"[]", CREDENTIALS["generic"], NOW)


def test_auth_errors_never_echo_the_secret() -> None:
    credentials = GenericCredentials(("super-secret-value",))
    headers = {"x-banditloop-signature": f"t={NOW_TS},v1=" + "0" * 64}
    with pytest.raises(WebhookAuthError) as caught:
        ADAPTERS["generic"].verify(headers, b"[]", credentials, NOW)
    assert "super-secret-value" not in str(caught.value)
