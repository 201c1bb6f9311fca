from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from service.measuring.adapters import (
    SesAdapter,
    SesCredentials,
    SnsCertificateStore,
    WebhookAuthError,
    WebhookNotConfiguredError,
    WebhookTemporaryError,
    is_sns_url,
)
from tests.service.measuring.adapters import signers
from tests.service.measuring.adapters.signers import (
    DECISION_A,
    DECISION_B,
    NOW,
    SNS_CERT_URL,
    TOPIC_ARN,
    dumps,
    sns_notification,
    sns_sign,
)

CREDENTIALS = SesCredentials(topic_arns=(TOPIC_ARN,))
Signer = tuple[rsa.RSAPrivateKey, bytes]


def _adapter(pem: bytes, fetched: list[str] | None = None) -> SesAdapter:
    def fetch(url: str) -> bytes:
        if fetched is not None:
            fetched.append(url)
        return pem

    return SesAdapter(SnsCertificateStore(fetcher=fetch))


def _ses_event(event_type: str = "Click", **detail: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "timestamp": "2026-03-02T11:50:00.000Z",
            "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "source": "sender@example.com",
            "tags": {
                "ses:configuration-set": ["ConfigSet"],
                "bl_decision": [DECISION_A],
                "bl_decision_subject": [DECISION_B],
            },
        },
    }
    key = {
        "Click": "click",
        "Open": "open",
        "Delivery": "delivery",
        "Bounce": "bounce",
        "Complaint": "complaint",
        "Subscription": "subscription",
    }.get(event_type)
    if key:
        event[key] = {"timestamp": "2026-03-02T11:55:00.000Z", **detail}
    return event


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_notification_is_accepted_and_parsed(sns_signer: Signer, version: str) -> None:
    key, pem = sns_signer
    fetched: list[str] = []
    adapter = _adapter(pem, fetched)
    message = sns_sign(
        sns_notification(
            _ses_event("Click", link="https://x.test/", userAgent="Mozilla/5.0 (X11)")
        ),
        key,
        version,
    )
    body = dumps(message)
    headers = {"x-amz-sns-message-type": "Notification", "x-amz-sns-topic-arn": TOPIC_ARN}
    adapter.verify(headers, body, CREDENTIALS, NOW)

    batch = adapter.parse(body, headers)

    (event,) = batch.events
    assert event.type == "click"
    assert event.event_key == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert event.decision_ids == (DECISION_A, DECISION_B)
    assert event.occurred_at.isoformat() == "2026-03-02T11:55:00+00:00"
    assert event.user_agent == "Mozilla/5.0 (X11)"
    assert fetched == [SNS_CERT_URL]


def test_subject_takes_part_in_the_signature(sns_signer: Signer) -> None:
    key, pem = sns_signer
    message = sns_sign(sns_notification(_ses_event(), Subject="Amazon SES Email Event"), key)
    adapter = _adapter(pem)
    adapter.verify({}, dumps(message), CREDENTIALS, NOW)
    message["Subject"] = "Something else"
    with pytest.raises(WebhookAuthError, match="does not verify"):
        adapter.verify({}, dumps(message), CREDENTIALS, NOW)


def test_certificate_is_cached(sns_signer: Signer) -> None:
    key, pem = sns_signer
    fetched: list[str] = []
    adapter = _adapter(pem, fetched)
    for message_id in ("m-1", "m-2", "m-3"):
        body = dumps(sns_sign(sns_notification(_ses_event(), message_id=message_id), key))
        adapter.verify({}, body, CREDENTIALS, NOW)
    assert fetched == [SNS_CERT_URL]


def test_certificate_from_a_pem_directory_works_offline(sns_signer: Signer, tmp_path: Path) -> None:
    key, pem = sns_signer
    (tmp_path / SNS_CERT_URL.rsplit("/", 1)[1]).write_bytes(pem)
    adapter = SesAdapter(SnsCertificateStore(fetcher=None))
    credentials = SesCredentials(topic_arns=(TOPIC_ARN,), certificate_dir=str(tmp_path))
    adapter.verify({}, dumps(sns_sign(sns_notification(_ses_event()), key)), credentials, NOW)


def test_offline_without_the_certificate_is_rejected(sns_signer: Signer) -> None:
    key, _ = sns_signer
    adapter = SesAdapter(SnsCertificateStore(fetcher=None))
    with pytest.raises(WebhookAuthError, match="offline"):
        adapter.verify({}, dumps(sns_sign(sns_notification(_ses_event()), key)), CREDENTIALS, NOW)


def test_altered_message_is_rejected(sns_signer: Signer) -> None:
    key, pem = sns_signer
    message = sns_sign(sns_notification(_ses_event("Open")), key)
    message["Message"] = message["Message"].replace("Open", "Click")
    with pytest.raises(WebhookAuthError, match="does not verify"):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


def test_signature_version_cannot_be_swapped(sns_signer: Signer) -> None:
    key, pem = sns_signer
    message = sns_sign(sns_notification(_ses_event()), key, version="2")
    message["SignatureVersion"] = "1"
    with pytest.raises(WebhookAuthError):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


def test_wrong_key_is_rejected(sns_signer: Signer) -> None:
    _, pem = sns_signer
    other_key, _ = signers.new_sns_signer()
    message = sns_sign(sns_notification(_ses_event()), other_key)
    with pytest.raises(WebhookAuthError, match="does not verify"):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


def test_topic_outside_the_allow_list_is_rejected(sns_signer: Signer) -> None:
    key, pem = sns_signer
    message = sns_sign(
        sns_notification(_ses_event(), TopicArn="arn:aws:sns:us-east-1:999999999999:evil"), key
    )
    with pytest.raises(WebhookAuthError, match="allow-list"):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


def test_empty_allow_list_is_not_configured(sns_signer: Signer) -> None:
    key, pem = sns_signer
    message = sns_sign(sns_notification(_ses_event()), key)
    with pytest.raises(WebhookNotConfiguredError):
        _adapter(pem).verify({}, dumps(message), SesCredentials(topic_arns=()), NOW)


def test_second_topic_is_accepted_during_migration(sns_signer: Signer) -> None:
    key, pem = sns_signer
    new_arn = "arn:aws:sns:eu-west-1:123456789012:ses-events"
    message = sns_sign(sns_notification(_ses_event(), TopicArn=new_arn), key)
    credentials = SesCredentials(topic_arns=(TOPIC_ARN, new_arn))
    _adapter(pem).verify({}, dumps(message), credentials, NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.test/cert.pem",
        "https://evil.test/sns.us-east-1.amazonaws.com/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    ],
)
def test_certificate_url_must_be_https_on_an_sns_host(sns_signer: Signer, url: str) -> None:
    key, pem = sns_signer
    fetched: list[str] = []
    message = sns_sign(sns_notification(_ses_event()), key)
    message["SigningCertURL"] = url
    with pytest.raises(WebhookAuthError, match="SNS host"):
        _adapter(pem, fetched).verify({}, dumps(message), CREDENTIALS, NOW)
    assert fetched == []


def test_sns_hosts_include_the_china_partition() -> None:
    assert is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem")
    assert is_sns_url("https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-x.pem")


def test_stale_message_is_rejected(sns_signer: Signer) -> None:
    key, pem = sns_signer
    old = NOW - timedelta(hours=2, seconds=1)
    message = sns_sign(sns_notification(_ses_event(), timestamp=old), key)
    with pytest.raises(WebhookAuthError, match="tolerance"):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


def test_expired_certificate_is_rejected() -> None:
    key, pem = signers.new_sns_signer(valid_to=NOW - timedelta(minutes=1))
    message = sns_sign(sns_notification(_ses_event()), key)
    with pytest.raises(WebhookAuthError, match="not valid now"):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


@pytest.mark.parametrize("field", ["Signature", "SigningCertURL", "SignatureVersion", "MessageId"])
def test_missing_signature_fields_are_rejected(sns_signer: Signer, field: str) -> None:
    key, pem = sns_signer
    message = sns_sign(sns_notification(_ses_event()), key)
    del message[field]
    with pytest.raises(WebhookAuthError):
        _adapter(pem).verify({}, dumps(message), CREDENTIALS, NOW)


def test_topic_header_must_agree_with_the_message(sns_signer: Signer) -> None:
    key, pem = sns_signer
    body = dumps(sns_sign(sns_notification(_ses_event()), key))
    with pytest.raises(WebhookAuthError, match="disagrees"):
        _adapter(pem).verify({"x-amz-sns-topic-arn": "arn:other"}, body, CREDENTIALS, NOW)


def test_subscription_confirmation_is_verified_and_returns_the_url(sns_signer: Signer) -> None:
    key, pem = sns_signer
    subscribe_url = (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC_ARN}&Token=2336412f37"
    )
    message = sns_sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37",
            "TopicArn": TOPIC_ARN,
            "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.",
            "SubscribeURL": subscribe_url,
            "Timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        },
        key,
        version="1",
    )
    adapter = _adapter(pem)
    adapter.verify({}, dumps(message), CREDENTIALS, NOW)

    batch = adapter.parse(dumps(message), {})

    assert batch.events == []
    assert batch.control is not None
    assert batch.control.kind == "subscription_confirmation"
    assert batch.control.confirm_url == subscribe_url

    message["Token"] = "forged"
    with pytest.raises(WebhookAuthError):
        adapter.verify({}, dumps(message), CREDENTIALS, NOW)


def test_confirmation_url_off_sns_is_never_offered() -> None:
    message = {
        "Type": "SubscriptionConfirmation",
        "TopicArn": TOPIC_ARN,
        "SubscribeURL": "https://evil.test/confirm",
    }
    control = SesAdapter().parse(dumps(message), {}).control
    assert control is not None
    assert control.confirm_url is None


def test_unsubscribe_confirmation_is_reported_not_followed() -> None:
    message = {
        "Type": "UnsubscribeConfirmation",
        "TopicArn": TOPIC_ARN,
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    }
    control = SesAdapter().parse(dumps(message), {}).control
    assert control is not None
    assert control.kind == "unsubscribe_confirmation"
    assert control.confirm_url is None


@pytest.mark.parametrize(
    ("event", "ours"),
    [
        (_ses_event("Send"), None),
        (_ses_event("Delivery"), "delivered"),
        (_ses_event("Open", userAgent="Mozilla/5.0 (Windows)"), "open"),
        (_ses_event("Click", link="https://x.test/"), "click"),
        (_ses_event("Bounce", bounceType="Permanent"), "bounce"),
        (_ses_event("Bounce", bounceType="Transient"), None),
        (_ses_event("Complaint", complaintFeedbackType="abuse"), "complaint"),
        (_ses_event("Complaint", complaintFeedbackType="not-spam"), None),
        (_ses_event("Subscription", newTopicPreferences={"unsubscribeAll": True}), "unsubscribe"),
        (_ses_event("Reject"), None),
        (_ses_event("DeliveryDelay"), None),
    ],
)
def test_ses_event_types_map_to_ours(event: dict[str, Any], ours: str | None) -> None:
    body = dumps(sns_notification(event))
    assert SesAdapter().parse(body, {}).events[0].type == ours


def test_legacy_notification_type_is_read() -> None:
    event = _ses_event("Bounce", bounceType="Permanent")
    event["notificationType"] = event.pop("eventType")
    assert SesAdapter().parse(dumps(sns_notification(event)), {}).events[0].type == "bounce"


def test_message_that_is_not_an_ses_event_is_poison() -> None:
    body = dumps(sns_notification({"eventType": "Click"}))
    body = body.replace(b'\\"eventType\\"', b"garbage")
    batch = SesAdapter().parse(body, {})
    assert batch.events == []
    assert len(batch.poison) == 1


def test_malformed_tag_value_is_poison() -> None:
    event = _ses_event()
    event["mail"]["tags"]["bl_decision"] = ["has space"]
    batch = SesAdapter().parse(dumps(sns_notification(event)), {})
    assert "decision id" in batch.poison[0].reason


def test_event_without_tags_parses_with_no_decision_id() -> None:
    event = _ses_event("Delivery")
    del event["mail"]["tags"]
    assert SesAdapter().parse(dumps(sns_notification(event)), {}).events[0].decision_ids == ()


def test_body_signed_message_roundtrips_through_json(sns_signer: Signer) -> None:
    # A Message with escapes (newlines, quotes, unicode) must verify after the
    # JSON round trip: the string to sign uses the decoded value.
    key, pem = sns_signer
    event = _ses_event()
    event["mail"]["commonHeaders"] = {"subject": 'Sale "now"\n ends ☃ soon'}
    message = sns_sign(sns_notification(event), key)
    _adapter(pem).verify({}, json.dumps(message).encode(), CREDENTIALS, NOW)


def test_certificate_fetch_failure_is_temporary(sns_signer: Signer) -> None:
    key, _ = sns_signer

    def broken(url: str) -> bytes:
        raise OSError("network is unreachable")

    adapter = SesAdapter(SnsCertificateStore(fetcher=broken))
    message = sns_sign(sns_notification(_ses_event()), key)
    with pytest.raises(WebhookTemporaryError):
        adapter.verify({}, dumps(message), CREDENTIALS, NOW)


def test_certificate_that_is_not_pem_is_rejected(sns_signer: Signer) -> None:
    key, _ = sns_signer
    adapter = SesAdapter(SnsCertificateStore(fetcher=lambda url: b"<html>not a cert</html>"))
    message = sns_sign(sns_notification(_ses_event()), key)
    with pytest.raises(WebhookAuthError, match="PEM"):
        adapter.verify({}, dumps(message), CREDENTIALS, NOW)
