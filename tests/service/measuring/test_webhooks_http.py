"""ESP webhooks through the real app, on SQLite and PostgreSQL, signed with real keys.

Payloads are built and signed by ``tests/service/measuring/adapters/signers.py`` (written from each
provider's documentation, sharing no code with the adapters), carry decision ids that
``/v1/choose`` returned, and are checked against the statistics they produce.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlmodel import Session, func, select

from service.core.db import make_engine
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.measuring import stats_repository as stats_repo
from service.models import (
    DeadLetter,
    Dispatch,
    FirstEvent,
    OutcomeEvent,
    RawPayload,
    StatBucket,
)
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, stats_counter
from tests.service.measuring.adapters import signers

PROVIDERS = ["sendgrid", "mailgun", "postmark", "ses", "customerio", "braze", "generic"]
JSON = {"content-type": "application/json"}

# Each session gets its own certificate URL: the app's SNS certificate cache is per process.
SNS_CERT_URL = (
    f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{uuid.uuid4().hex}.pem"
)


@dataclass(frozen=True)
class Keys:
    """One provider-side set of secrets: the configured one, or an impostor's."""

    sendgrid: ec.EllipticCurvePrivateKey
    mailgun: str
    postmark: tuple[str, str]
    ses: rsa.RSAPrivateKey
    customerio: str
    braze: str
    generic: str


@dataclass(frozen=True)
class Message:
    """One event about one message, carrying decision ids under their custom-arg names."""

    key: str
    type: str
    decisions: dict[str, str] = field(default_factory=dict)


Request = tuple[bytes, dict[str, str]]


@functools.cache
def _sns_signer() -> tuple[rsa.RSAPrivateKey, bytes]:
    # One per process, like the app's SNS certificate cache: every module that signs SNS
    # messages (this one, test_hostile_webhooks.py) signs for the certificate it holds.
    now = datetime.now(UTC)
    return signers.new_sns_signer(now - timedelta(days=1), now + timedelta(days=30))


@pytest.fixture(scope="module")
def sns_pem() -> tuple[rsa.RSAPrivateKey, bytes]:
    return _sns_signer()


@pytest.fixture(scope="module")
def good(sns_pem: tuple[rsa.RSAPrivateKey, bytes]) -> Keys:
    return Keys(
        sendgrid=signers.new_ec_key(),
        mailgun="key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
        postmark=("postmark", "s3cret-current-password"),
        ses=sns_pem[0],
        customerio="d5c1a0a4f1f0e1e2b3c4d5e6f7a8b9c0",
        braze="braze-currents-token-0123456789abcdef",
        generic="whsec_generic_current_0123456789",
    )


@pytest.fixture(scope="module")
def wrong() -> Keys:
    # The SNS impostor signs with its own RSA key but points at the configured certificate.
    return Keys(
        sendgrid=signers.new_ec_key(),
        mailgun="key-someone-else-entirely-000000000",
        postmark=("postmark", "guessed-password"),
        ses=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        customerio="00000000000000000000000000000000",
        braze="not-the-braze-token",
        generic="whsec_someone_else",
    )


@pytest.fixture(scope="module")
def certificate_dir(
    tmp_path_factory: pytest.TempPathFactory, sns_pem: tuple[rsa.RSAPrivateKey, bytes]
) -> Path:
    folder = tmp_path_factory.mktemp("sns-certs")
    (folder / SNS_CERT_URL.rsplit("/", 1)[1]).write_bytes(sns_pem[1])
    return folder


@pytest.fixture
def settings(settings: Settings, good: Keys, certificate_dir: Path) -> Settings:
    return settings.model_copy(
        update={
            "sendgrid_public_key": signers.sendgrid_public_key(good.sendgrid),
            "mailgun_signing_key": good.mailgun,
            "postmark_username": good.postmark[0],
            "postmark_password": good.postmark[1],
            "ses_topic_arns": signers.TOPIC_ARN,
            "ses_certificate_dir": str(certificate_dir),
            "ses_auto_confirm": False,
            "customerio_signing_key": good.customerio,
            "braze_token": good.braze,
            "generic_webhook_secret": good.generic,
        }
    )


# --- payloads, one builder per provider ---------------------------------------------

NAMES = {
    "sendgrid": {"delivered": "delivered", "open": "open", "click": "click"},
    "mailgun": {"delivered": "delivered", "open": "opened", "click": "clicked"},
    "postmark": {"delivered": "Delivery", "open": "Open", "click": "Click"},
    "ses": {"delivered": "Delivery", "open": "Open", "click": "Click"},
    "customerio": {"delivered": "delivered", "open": "opened", "click": "clicked"},
    "braze": {"delivered": "Delivery", "open": "Open", "click": "Click"},
    "generic": {"delivered": "delivered", "open": "open", "click": "click"},
}
POSTMARK_TIME = {"Delivery": "DeliveredAt", "Open": "ReceivedAt", "Click": "ReceivedAt"}
SES_DETAIL = {"Delivery": "delivery", "Open": "open", "Click": "click"}


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sendgrid_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    events = [
        {
            "email": f"{m.key}@example.com",
            "timestamp": int(at.timestamp()),
            "event": NAMES["sendgrid"][m.type],
            "sg_event_id": m.key,
            "sg_message_id": f"msg-{m.key}.filter0001.16648.5515E0B88.0",
            **m.decisions,
        }
        for m in messages
    ]
    body = signers.dumps(events)
    return [(body, {**JSON, **signers.sendgrid_headers(keys.sendgrid, body, int(at.timestamp()))})]


def mailgun_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    requests = []
    for m in messages:
        data = {
            "id": m.key,
            "timestamp": at.timestamp(),
            "event": NAMES["mailgun"][m.type],
            "recipient": f"{m.key}@example.com",
            "message": {"headers": {"message-id": f"{m.key}@mg.example.com"}},
            "user-variables": m.decisions,
        }
        requests.append((signers.mailgun_body(data, keys.mailgun, int(at.timestamp())), JSON))
    return requests


def postmark_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    requests = []
    for m in messages:
        record_type = NAMES["postmark"][m.type]
        record = {
            "RecordType": record_type,
            "MessageStream": "outbound",
            "MessageID": f"msg-{m.key}",
            "Recipient": f"{m.key}@example.com",
            POSTMARK_TIME[record_type]: iso(at),
            "Metadata": m.decisions,
            "OriginalLink": "https://shop.example.com/spring",
        }
        requests.append((signers.dumps(record), {**JSON, **signers.basic_auth(*keys.postmark)}))
    return requests


def ses_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    requests = []
    for m in messages:
        event_type = NAMES["ses"][m.type]
        ses_event = {
            "eventType": event_type,
            "mail": {
                "timestamp": iso(at),
                "messageId": f"ses-{m.key}",
                "tags": {"ses:configuration-set": ["spring"]}
                | {name: [value] for name, value in m.decisions.items()},
            },
            SES_DETAIL[event_type]: {"timestamp": iso(at)},
        }
        notification = signers.sns_notification(
            ses_event, message_id=m.key, timestamp=at, SigningCertURL=SNS_CERT_URL
        )
        body = signers.dumps(signers.sns_sign(notification, keys.ses))
        requests.append((body, {**JSON, "x-amz-sns-message-type": "Notification"}))
    return requests


def customerio_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    requests = []
    for m in messages:
        body = signers.dumps(
            {
                "event_id": m.key,
                "object_type": "email",
                "metric": NAMES["customerio"][m.type],
                "timestamp": int(at.timestamp()),
                "data": {
                    "customer_id": m.key,
                    "delivery_id": f"dlv-{m.key}",
                    "recipient": f"{m.key}@example.com",
                    "message_data": m.decisions,
                },
            }
        )
        headers = signers.customerio_headers(keys.customerio, body, int(at.timestamp()))
        requests.append((body, {**JSON, **headers}))
    return requests


def braze_event(
    action: str, event_id: str, user: str, at: datetime, extras: dict[str, str] | None = None
) -> dict[str, Any]:
    properties: dict[str, Any] = {"campaign_id": "spring-sale", "dispatch_id": "dispatch-1"}
    if extras is not None:
        properties["message_extras"] = extras
    return {
        "event_type": f"users.messages.email.{action}",
        "id": event_id,
        "time": int(at.timestamp()),
        "user": {"user_id": user},
        "properties": properties,
    }


def braze_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    # Decision ids travel on the Send event only; the later event joins through the dispatch.
    events = []
    for m in messages:
        if m.decisions:
            events.append(braze_event("Send", f"{m.key}-send", m.key, at, m.decisions))
        events.append(braze_event(NAMES["braze"][m.type], m.key, m.key, at))
    return [(signers.dumps({"events": events}), braze_auth(keys))]


def braze_auth(keys: Keys) -> dict[str, str]:
    return {**JSON, "authorization": f"Bearer {keys.braze}"}


def generic_requests(messages: list[Message], keys: Keys, at: datetime) -> list[Request]:
    body = signers.dumps(
        [
            {
                "event_id": m.key,
                "decision_ids": list(m.decisions.values()),
                "type": m.type,
                "occurred_at": iso(at),
            }
            for m in messages
        ]
    )
    return [(body, {**JSON, **signers.generic_headers(keys.generic, body, int(at.timestamp()))})]


BUILDERS: dict[str, Callable[[list[Message], Keys, datetime], list[Request]]] = {
    "sendgrid": sendgrid_requests,
    "mailgun": mailgun_requests,
    "postmark": postmark_requests,
    "ses": ses_requests,
    "customerio": customerio_requests,
    "braze": braze_requests,
    "generic": generic_requests,
}

# How old a signed timestamp may be (docs/webhooks.md); Postmark and Braze sign none.
TOLERANCE = {
    "sendgrid": timedelta(hours=25),
    "mailgun": timedelta(hours=9),
    "ses": timedelta(hours=2),
    "customerio": timedelta(days=8),
    "generic": timedelta(minutes=5),
}


def build(provider: str, messages: list[Message], keys: Keys, at: datetime | None = None):
    return BUILDERS[provider](messages, keys, at or datetime.now(UTC))


def without_credentials(provider: str, request: Request) -> Request:
    """The request as it would arrive with the provider's authentication stripped."""
    body, headers = request
    if provider == "mailgun":
        payload = json.loads(body)
        payload.pop("signature")
        return signers.dumps(payload), headers
    if provider == "ses":
        payload = json.loads(body)
        payload.pop("Signature")
        return signers.dumps(payload), headers
    return body, JSON


def altered(provider: str, request: Request, old: str, new: str) -> Request:
    """Re-attribute the event to another decision after signing.

    Mailgun signs timestamp + token only (not the event data), so for Mailgun the
    tampering that must fail is a changed token.
    """
    body, headers = request
    if provider == "mailgun":
        payload = json.loads(body)
        token = payload["signature"]["token"]
        payload["signature"]["token"] = token[:-1] + ("0" if token[-1] != "0" else "1")
        return signers.dumps(payload), headers
    assert old.encode() in body
    return body.replace(old.encode(), new.encode()), headers


# --- helpers ------------------------------------------------------------------------


def sign_raw(provider: str, body: bytes, keys: Keys) -> dict[str, str]:
    now = int(datetime.now(UTC).timestamp())
    if provider == "sendgrid":
        return {**JSON, **signers.sendgrid_headers(keys.sendgrid, body, now)}
    if provider == "postmark":
        return {**JSON, **signers.basic_auth(*keys.postmark)}
    if provider == "customerio":
        return {**JSON, **signers.customerio_headers(keys.customerio, body, now)}
    if provider == "braze":
        return braze_auth(keys)
    return {**JSON, **signers.generic_headers(keys.generic, body, now)}


def post_all(client: TestClient, provider: str, requests: list[Request]) -> list[dict]:
    bodies = []
    for body, headers in requests:
        response = client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return bodies


def total(bodies: list[dict], name: str) -> int:
    return sum(b[name] if isinstance(b[name], int) else len(b[name]) for b in bodies)


def counts(runtime: Runtime, experiment_id: int) -> Counter[str]:
    """Statistics per metric for one experiment (zeros dropped)."""
    with Session(runtime.engine) as session:
        rows = session.exec(select(StatBucket).where(StatBucket.experiment_id == experiment_id))
        found: Counter[str] = Counter()
        for row in rows:
            found[row.metric] += row.count
    return +found


def rows(runtime: Runtime, model: type) -> int:
    with Session(runtime.engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


@dataclass
class Campaign:
    """A subject-line and a preheader experiment with decisions for the same sends."""

    subject: dict[str, Any]
    preheader: dict[str, Any]
    subject_ids: list[str]
    preheader_ids: list[str]


def campaign(client, admin, decide, runtime, n: int = 3) -> Campaign:
    subject = create_random_experiment(client, admin, arms=2)
    preheader = create_random_experiment(client, admin, arms=2)
    return Campaign(
        subject,
        preheader,
        [d["decision_id"] for d in decide_many(client, decide, runtime, subject["key"], n)],
        [d["decision_id"] for d in decide_many(client, decide, runtime, preheader["key"], 1)],
    )


def campaign_messages(c: Campaign, prefix: str = "m") -> list[Message]:
    both = {"bl_decision_subj": c.subject_ids[0], "bl_decision_pre": c.preheader_ids[0]}
    return [
        Message(f"{prefix}0", "click", both),
        Message(f"{prefix}1", "open", {"bl_decision_subj": c.subject_ids[1]}),
        Message(f"{prefix}2", "delivered", {"bl_decision_subj": c.subject_ids[2]}),
    ]


def assert_campaign_counted(runtime: Runtime, c: Campaign) -> None:
    assert counts(runtime, c.subject["id"]) == {
        "exposure": 3,
        "click": 1,
        "open": 1,
        "delivered": 1,
    }
    # The click on the message that carried both ids counts for the preheader test too.
    assert counts(runtime, c.preheader["id"]) == {"exposure": 1, "click": 1}


# --- tests --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_payload_is_accepted_and_counted_for_every_decision_id(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    c = campaign(client, admin, decide, runtime)
    bodies = post_all(client, provider, build(provider, campaign_messages(c), good))
    # Stored per (event, decision id): the two-id click is two accepted rows.
    assert total(bodies, "accepted") == 4
    assert total(bodies, "rejected") == 0
    assert total(bodies, "ignored") == (3 if provider == "braze" else 0)  # Send events
    assert_campaign_counted(runtime, c)
    assert rows(runtime, DeadLetter) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unauthenticated_requests_get_401_and_count_nothing(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys, wrong: Keys
):
    c = campaign(client, admin, decide, runtime)
    messages = campaign_messages(c)
    (request, *_) = build(provider, messages, good)
    bad: dict[str, Request] = {
        "altered": altered(provider, request, c.subject_ids[0], c.subject_ids[1]),
        "wrong key": build(provider, messages, wrong)[0],
        "missing credentials": without_credentials(provider, request),
    }
    if provider in TOLERANCE:
        stale = datetime.now(UTC) - TOLERANCE[provider] - timedelta(hours=1)
        bad["stale timestamp"] = build(provider, messages, good, stale)[0]
    if provider in ("postmark", "braze"):
        # Basic auth and bearer tokens do not cover the body: nothing to alter.
        del bad["altered"]
    for case, (body, headers) in bad.items():
        response = client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
        assert response.status_code == 401, (case, response.text)
        assert response.json()["error"]["code"] == "unauthorized", case
    assert rows(runtime, RawPayload) == 0
    assert rows(runtime, OutcomeEvent) == 0
    assert counts(runtime, c.subject["id"]) == {"exposure": 3}
    assert counts(runtime, c.preheader["id"]) == {"exposure": 1}
    # The same events, properly signed, are counted: the refusals were about the auth.
    post_all(client, provider, build(provider, messages, good))
    assert_campaign_counted(runtime, c)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_same_payload_delivered_fifty_times_counts_once(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    c = campaign(client, admin, decide, runtime)
    # The first request: the whole batch where the provider batches, else the one click
    # that carries both decision ids.
    payload = build(provider, campaign_messages(c), good)[0]
    (first,) = post_all(client, provider, [payload])
    stored = first["accepted"]
    assert stored == (4 if provider in ("sendgrid", "braze", "generic") else 2)
    for _ in range(49):
        (again,) = post_all(client, provider, [payload])
        assert (again["accepted"], again["duplicates"]) == (0, stored)
    assert rows(runtime, OutcomeEvent) == stored
    assert counts(runtime, c.subject["id"])["click"] == 1
    assert counts(runtime, c.preheader["id"]) == {"exposure": 1, "click": 1}


def test_concurrent_duplicates_count_once(
    client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    exp = create_random_experiment(client, admin, arms=3)
    decisions = decide_many(client, decide, runtime, exp["key"], 200)
    messages = [
        Message(f"c{i}", "click", {"bl_decision": d["decision_id"]})
        for i, d in enumerate(decisions)
    ]
    ((body, headers),) = build("sendgrid", messages, good)
    results: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def deliver() -> None:
        try:
            start.wait()
            for _ in range(3):
                response = client.post("/v1/webhooks/sendgrid", content=body, headers=headers)
                assert response.status_code == 200, response.text
                results.append(response.json())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r["accepted"] for r in results) == 200
    assert sum(r["duplicates"] for r in results) == 200 * 23
    assert counts(runtime, exp["id"]) == {"exposure": 200, "click": 200}
    assert rows(runtime, OutcomeEvent) == 200
    assert rows(runtime, RawPayload) == 24


POISON = {
    "sendgrid": [
        {"event": "click", "sg_event_id": "no-time", "timestamp": "yesterday"},
        {"event": "click", "sg_event_id": "bad-id", "timestamp": 1, "bl_decision": "not a token!"},
    ],
    "generic": [
        {"event_id": "no-type", "type": "purchase"},
        {"event_id": "bad-id", "type": "click", "decision_id": "not a token!"},
    ],
}


@pytest.mark.parametrize("provider", sorted(POISON))
def test_poison_events_are_dead_lettered_and_the_rest_counted(
    provider: str, client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    exp = create_random_experiment(client, admin, arms=2)
    ids = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 5)]
    forged = ids[0][:-4] + ("AAAA" if not ids[0].endswith("AAAA") else "BBBB")
    messages = [Message(f"k{i}", "click", {"bl_decision": d}) for i, d in enumerate(ids)]
    messages.insert(2, Message("forged", "click", {"bl_decision": forged}))
    ((body, _headers),) = build(provider, messages, good)
    events = json.loads(body)
    unparseable, malformed_id = POISON[provider]
    events.insert(1, unparseable)
    events.insert(4, malformed_id)
    body = signers.dumps(events)
    (result,) = post_all(client, provider, [(body, sign_raw(provider, body, good))])
    assert result["accepted"] == 5
    assert sorted(r["index"] for r in result["rejected"]) == [1, 3, 4]
    with Session(runtime.engine) as session:
        reasons = sorted(d.reason for d in session.exec(select(DeadLetter)))
    assert len(reasons) == 3
    assert any("decision id rejected" in r for r in reasons)
    assert counts(runtime, exp["id"]) == {"exposure": 5, "click": 5}
    replayed = client.post("/v1/admin/replay", json={"source": provider}, headers=admin)
    assert replayed.status_code == 200, replayed.text
    assert rows(runtime, DeadLetter) == 3  # dead-lettered once, not once per replay
    assert counts(runtime, exp["id"]) == {"exposure": 5, "click": 5}


def test_event_without_decision_id_is_ignored_not_dead_lettered(
    client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    exp = create_random_experiment(client, admin, arms=2)
    (d,) = [d["decision_id"] for d in decide_many(client, decide, runtime, exp["key"], 1)]
    messages = [
        Message("mine", "click", {"bl_decision": d}),
        Message("newsletter", "click"),  # ESP webhooks cover the whole account
    ]
    (sendgrid,) = post_all(client, "sendgrid", build("sendgrid", messages, good))
    assert (sendgrid["accepted"], sendgrid["ignored"], sendgrid["rejected"]) == (1, 1, [])
    # A Braze event whose Send was never seen has nothing to join: ignored as well.
    (braze,) = post_all(client, "braze", build("braze", [Message("orphan-open", "open")], good))
    assert (braze["accepted"], braze["ignored"], braze["rejected"]) == (0, 1, [])
    assert rows(runtime, DeadLetter) == 0
    assert counts(runtime, exp["id"]) == {"exposure": 1, "click": 1}


def test_braze_send_extras_then_later_click_joined_through_the_dispatch(
    client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    c = campaign(client, admin, decide, runtime, n=1)
    now = datetime.now(UTC)
    extras = {"bl_decision_subj": c.subject_ids[0], "bl_decision_pre": c.preheader_ids[0]}
    send = braze_event("Send", "s-1", "user-1", now, extras)
    other_user = braze_event("Send", "s-2", "user-2", now, {})
    (sent,) = post_all(
        client, "braze", [(signers.dumps({"events": [send, other_user]}), braze_auth(good))]
    )
    assert (sent["accepted"], sent["ignored"]) == (0, 2)
    later = now + timedelta(minutes=5)
    events = [
        braze_event("Delivery", "d-1", "user-1", later),
        braze_event("Click", "k-1", "user-1", later + timedelta(minutes=30)),
        braze_event("Click", "k-2", "user-2", later + timedelta(minutes=30)),  # no extras
    ]
    (joined,) = post_all(client, "braze", [(signers.dumps({"events": events}), braze_auth(good))])
    assert (joined["accepted"], joined["ignored"]) == (4, 1)
    assert counts(runtime, c.subject["id"]) == {"exposure": 1, "delivered": 1, "click": 1}
    assert counts(runtime, c.preheader["id"]) == {"exposure": 1, "delivered": 1, "click": 1}


def test_replay_after_a_statistics_wipe_rebuilds_the_same_counts(
    client: TestClient, admin, decide, runtime: Runtime, good: Keys
):
    c = campaign(client, admin, decide, runtime)
    for provider in PROVIDERS:
        post_all(client, provider, build(provider, campaign_messages(c, provider), good))
    assert_campaign_counted(runtime, c)  # first events: seven providers, one click each
    before = stats_counter(runtime)
    stored = rows(runtime, OutcomeEvent)

    def replay() -> dict:
        response = client.post("/v1/admin/replay", json={}, headers=admin)
        assert response.status_code == 200, response.text
        return response.json()

    with runtime.unit_of_work() as session:
        stats_repo.wipe(session)
    assert stats_counter(runtime) == Counter()
    replay()
    assert stats_counter(runtime) == before
    assert replay()["accepted"] == 0  # idempotent
    assert stats_counter(runtime) == before

    # Everything derived from the raw payloads lost: replay parses them again (every
    # adapter, from the stored bytes and headers) and counts them anew.
    with runtime.unit_of_work() as session:
        for model in (OutcomeEvent, FirstEvent, Dispatch, StatBucket):
            session.exec(delete(model))  # type: ignore[call-overload]
    assert replay()["accepted"] == stored
    assert stats_counter(runtime) == before
    assert rows(runtime, OutcomeEvent) == stored


def test_sns_subscription_confirmation_is_answered_without_fetching(
    client: TestClient, runtime: Runtime, good: Keys, monkeypatch: pytest.MonkeyPatch
):
    fetched: list[str] = []
    monkeypatch.setattr(
        "service.measuring.webhook_intake.httpx.get", lambda url, **_: fetched.append(url)
    )
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425f004ae",
        "TopicArn": signers.TOPIC_ARN,
        "Message": "You have chosen to subscribe to the topic; to confirm, visit SubscribeURL.",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
        "&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-events&Token=2336412f37",
        "Timestamp": iso(datetime.now(UTC)),
        "SigningCertURL": SNS_CERT_URL,
    }
    body = signers.dumps(signers.sns_sign(message, good.ses))
    headers = {**JSON, "x-amz-sns-message-type": "SubscriptionConfirmation"}
    response = client.post("/v1/webhooks/ses", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"control": "subscription_confirmation", "confirmed": False}
    assert fetched == []
    assert rows(runtime, OutcomeEvent) == 0
    forged = signers.dumps(signers.sns_sign(message, rsa.generate_private_key(65537, 2048)))
    assert client.post("/v1/webhooks/ses", content=forged, headers=headers).status_code == 401


# An authenticated body that will never parse: stored and dead-lettered, then answered
# with the status that provider reads as "do not retry" (or 200 where any failure
# stalls the provider's queue), per docs/webhooks.md.
MALFORMED = {
    "sendgrid": ({"events": []}, 400),
    "postmark": ("not a record", 403),
    "customerio": (42, 200),
    "braze": ({"events": "none"}, 200),
    "generic": ({"items": []}, 400),
}


def test_status_codes_follow_each_providers_retry_rules(
    client: TestClient, runtime: Runtime, good: Keys
):
    for provider, (payload, status) in MALFORMED.items():
        body = signers.dumps(payload)
        response = client.post(
            f"/v1/webhooks/{provider}", content=body, headers=sign_raw(provider, body, good)
        )
        assert response.status_code == status, (provider, response.text)
    assert rows(runtime, RawPayload) == len(MALFORMED)
    assert rows(runtime, DeadLetter) == len(MALFORMED)

    # Mailgun: 406 means "never retry", so it is kept for a body that can never parse.
    # Its signature lives inside the body, so an unparseable body is unauthenticated: 401.
    for body in (b"not json", b"[]", signers.dumps({"event-data": {}})):
        response = client.post("/v1/webhooks/mailgun", content=body, headers=JSON)
        assert response.status_code == 401, body
    # A signed body whose event data is unusable: the event is dead-lettered, 200.
    signed = signers.mailgun_body("garbage", good.mailgun, int(datetime.now(UTC).timestamp()))
    (result,) = post_all(client, "mailgun", [(signed, JSON)])
    assert len(result["rejected"]) == 1
    assert rows(runtime, DeadLetter) == len(MALFORMED) + 1

    # Postmark stops on 403: a wrong password is a 401, never a 403.
    body = signers.dumps({"RecordType": "Open"})
    wrong_password = {**JSON, **signers.basic_auth(good.postmark[0], "nope")}
    assert (
        client.post("/v1/webhooks/postmark", content=body, headers=wrong_password).status_code
        == 401
    )
    assert client.post("/v1/webhooks/nope", content=b"{}", headers=JSON).status_code == 404


@pytest.mark.parametrize("provider", ["mailgun", "postmark"])
def test_database_outage_is_a_retryable_5xx(
    provider: str, client: TestClient, runtime: Runtime, good: Keys
):
    # Mailgun stops on 406 and Postmark on 403: a fault of ours must never answer those.
    ((body, headers),) = build(provider, [Message("x", "click", {"bl_decision": "abc"})], good)
    serving = runtime.engine
    runtime.engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/banditloop_down")
    try:
        response = client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
    finally:
        runtime.engine.dispose()
        runtime.engine = serving
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
