from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from service.measuring.adapters import (
    SendGridAdapter,
    SendGridCredentials,
    WebhookAuthError,
    WebhookNotConfiguredError,
    WebhookPayloadError,
)
from tests.service.measuring.adapters.signers import (
    DECISION_A,
    DECISION_B,
    DECISION_C,
    NOW,
    NOW_TS,
    dumps,
    sendgrid_headers,
    sendgrid_public_key,
)

ADAPTER = SendGridAdapter()


def _event(event: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "email": "ada@example.com",
        "timestamp": NOW_TS - 60,
        "event": event,
        "sg_event_id": f"evt-{event}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    base.update(fields)
    return base


def _credentials(*keys: ec.EllipticCurvePrivateKey) -> SendGridCredentials:
    return SendGridCredentials(public_keys=tuple(sendgrid_public_key(key) for key in keys))


def test_signed_batch_is_accepted_and_parsed(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps(
        [
            _event("delivered", bl_decision=DECISION_A),
            _event("open", bl_decision=DECISION_A, bl_decision_subject=DECISION_B),
            _event("click", bl_decision=f"{DECISION_A},{DECISION_C}", url="https://x.test/"),
        ]
    )
    headers = sendgrid_headers(ec_key, body)
    ADAPTER.verify(headers, body, _credentials(ec_key), NOW)

    batch = ADAPTER.parse(body, headers)

    assert batch.poison == []
    assert [event.type for event in batch.events] == ["delivered", "open", "click"]
    assert [event.event_key for event in batch.events] == [
        "evt-delivered",
        "evt-open",
        "evt-click",
    ]
    assert batch.events[0].decision_ids == (DECISION_A,)
    assert batch.events[1].decision_ids == (DECISION_A, DECISION_B)
    assert batch.events[2].decision_ids == (DECISION_A, DECISION_C)
    assert batch.events[0].occurred_at == NOW - timedelta(seconds=60)
    assert batch.events[0].message_id == "14c5d75ce93.dfd.64b469/ada@example.com"
    assert all(event.provider == "sendgrid" for event in batch.events)


def test_official_helper_accepts_our_signature_and_we_accept_its_key_format(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    eventwebhook = pytest.importorskip("sendgrid.helpers.eventwebhook")
    body = dumps([_event("open")])
    headers = sendgrid_headers(ec_key, body)
    helper = eventwebhook.EventWebhook(sendgrid_public_key(ec_key))

    assert helper.verify_signature(
        body.decode("utf-8"),
        headers["x-twilio-email-event-webhook-signature"],
        headers["x-twilio-email-event-webhook-timestamp"],
    )
    ADAPTER.verify(headers, body, _credentials(ec_key), NOW)

    tampered = body.replace(b"open", b"click")
    assert not helper.verify_signature(
        tampered.decode("utf-8"),
        headers["x-twilio-email-event-webhook-signature"],
        headers["x-twilio-email-event-webhook-timestamp"],
    )
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, tampered, _credentials(ec_key), NOW)


def test_sendgrids_published_test_vector_verifies() -> None:
    # The key, signature and timestamp from SendGrid's own helper tests
    # (sendgrid-nodejs packages/eventwebhook), over the payload they sign.
    public_key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcw"
        "HBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    signature = (
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nl"
        "xFDWYNH2j/0="
    )
    timestamp = "1588788367"
    body = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    headers = {
        "x-twilio-email-event-webhook-signature": signature,
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }
    signed_at = NOW.fromtimestamp(int(timestamp), tz=NOW.tzinfo)
    ADAPTER.verify(headers, body, SendGridCredentials((public_key,)), signed_at)


def test_altered_body_is_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click", bl_decision=DECISION_A)])
    headers = sendgrid_headers(ec_key, body)
    altered = body.replace(b"click", b"open!")
    with pytest.raises(WebhookAuthError, match="signature"):
        ADAPTER.verify(headers, altered, _credentials(ec_key), NOW)


def test_wrong_key_is_rejected(
    ec_key: ec.EllipticCurvePrivateKey, other_ec_key: ec.EllipticCurvePrivateKey
) -> None:
    body = dumps([_event("click")])
    headers = sendgrid_headers(other_ec_key, body)
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, body, _credentials(ec_key), NOW)


def test_second_key_is_accepted_during_rotation(
    ec_key: ec.EllipticCurvePrivateKey, other_ec_key: ec.EllipticCurvePrivateKey
) -> None:
    body = dumps([_event("click")])
    headers = sendgrid_headers(other_ec_key, body)
    ADAPTER.verify(headers, body, _credentials(ec_key, other_ec_key), NOW)


def test_timestamp_is_part_of_the_signature(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click")])
    headers = sendgrid_headers(ec_key, body)
    headers["x-twilio-email-event-webhook-timestamp"] = str(NOW_TS - 1)
    with pytest.raises(WebhookAuthError):
        ADAPTER.verify(headers, body, _credentials(ec_key), NOW)


def test_stale_timestamp_is_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click")])
    stale = NOW_TS - int(timedelta(hours=25, seconds=1).total_seconds())
    headers = sendgrid_headers(ec_key, body, timestamp=stale)
    with pytest.raises(WebhookAuthError, match="tolerance"):
        ADAPTER.verify(headers, body, _credentials(ec_key), NOW)


def test_retry_within_the_24_hour_horizon_is_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click")])
    headers = sendgrid_headers(ec_key, body, timestamp=NOW_TS - 23 * 3600)
    ADAPTER.verify(headers, body, _credentials(ec_key), NOW)


def test_future_timestamp_is_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click")])
    headers = sendgrid_headers(ec_key, body, timestamp=NOW_TS + 3600)
    with pytest.raises(WebhookAuthError, match="future"):
        ADAPTER.verify(headers, body, _credentials(ec_key), NOW)


@pytest.mark.parametrize(
    "missing",
    ["x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp"],
)
def test_missing_header_is_rejected(ec_key: ec.EllipticCurvePrivateKey, missing: str) -> None:
    body = dumps([_event("click")])
    headers = sendgrid_headers(ec_key, body)
    del headers[missing]
    with pytest.raises(WebhookAuthError, match="missing"):
        ADAPTER.verify(headers, body, _credentials(ec_key), NOW)


def test_unconfigured_key_is_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click")])
    with pytest.raises(WebhookNotConfiguredError):
        ADAPTER.verify(sendgrid_headers(ec_key, body), body, SendGridCredentials(()), NOW)


def test_pem_key_is_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = dumps([_event("click")])
    pem = (
        "-----BEGIN PUBLIC KEY-----\n" + sendgrid_public_key(ec_key) + "\n-----END PUBLIC KEY-----"
    )
    ADAPTER.verify(sendgrid_headers(ec_key, body), body, SendGridCredentials((pem,)), NOW)


@pytest.mark.parametrize(
    ("provider_event", "extra", "ours"),
    [
        ("processed", {}, None),
        ("deferred", {}, None),
        ("dropped", {}, None),
        ("delivered", {}, "delivered"),
        ("bounce", {"type": "bounce"}, "bounce"),
        ("bounce", {"type": "blocked"}, None),
        ("open", {}, "open"),
        ("click", {}, "click"),
        ("spamreport", {}, "complaint"),
        ("unsubscribe", {}, "unsubscribe"),
        ("group_unsubscribe", {}, "unsubscribe"),
        ("group_resubscribe", {}, None),
        ("brand_new_event", {}, None),
    ],
)
def test_event_names_map_to_ours(
    provider_event: str, extra: dict[str, object], ours: str | None
) -> None:
    batch = ADAPTER.parse(dumps([_event(provider_event, **extra)]), {})
    assert batch.events[0].type == ours


def test_machine_open_flag_is_read() -> None:
    body = dumps(
        [
            _event("open", sg_event_id="a", sg_machine_open=True),
            _event("open", sg_event_id="b", sg_machine_open=False),
            _event("open", sg_event_id="c"),
        ]
    )
    assert [event.machine for event in ADAPTER.parse(body, {}).events] == [True, False, False]


def test_batch_with_one_poison_event_keeps_the_rest() -> None:
    body = dumps(
        [
            _event("delivered", sg_event_id="ok-1"),
            {"event": "open", "timestamp": "yesterday-ish", "sg_event_id": "bad"},
            "not an object",
            _event("click", sg_event_id="ok-2", bl_decision="not a token!"),
            _event("click", sg_event_id="ok-3"),
        ]
    )
    batch = ADAPTER.parse(body, {})
    assert [event.event_key for event in batch.events] == ["ok-1", "ok-3"]
    assert [poison.index for poison in batch.poison] == [1, 2, 3]
    assert "decision id" in batch.poison[2].reason
    assert '"sg_event_id":"bad"' in batch.poison[0].raw_text


def test_event_without_decision_id_parses_with_none() -> None:
    batch = ADAPTER.parse(dumps([_event("click")]), {})
    assert batch.events[0].decision_ids == ()
    assert batch.poison == []


def test_event_without_sg_event_id_gets_a_stable_composite_key() -> None:
    event = _event("click", url="https://x.test/")
    del event["sg_event_id"]
    first = ADAPTER.parse(dumps([event]), {}).events[0].event_key
    again = ADAPTER.parse(dumps([event]), {}).events[0].event_key
    assert first == again
    assert first.startswith("sendgrid:")


def test_body_that_is_not_an_array_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError):
        ADAPTER.parse(b'{"event": "open"}', {})
