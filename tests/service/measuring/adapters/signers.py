"""Test-side signers, written from each provider's documentation.

They deliberately share no code with ``service.measuring.adapters``: a test that signs
with the adapter's own canonicalisation would prove nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())

DECISION_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
DECISION_B = "ZmFrZV9kZWNpc2lvbl90b2tlbl9icmF2bw"
DECISION_C = "Y2hhcmxpZV90b2tlbi1fdGVzdA"


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


# --- SendGrid: ECDSA P-256, SHA-256 over timestamp + body, base64 DER ------


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key(private_key: ec.EllipticCurvePrivateKey) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sendgrid_headers(
    private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int = NOW_TS
) -> dict[str, str]:
    signed = str(timestamp).encode("ascii") + body
    signature = private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    return {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode("ascii"),
        "x-twilio-email-event-webhook-timestamp": str(timestamp),
    }


# --- Mailgun: hex HMAC-SHA256(key, timestamp + token) in the body ------------


def mailgun_body(event_data: dict[str, Any], key: str, timestamp: int = NOW_TS) -> bytes:
    token = hashlib.sha256(f"token-{timestamp}-{key}".encode()).hexdigest()[:50]
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    signature = {"timestamp": str(timestamp), "token": token, "signature": digest}
    return dumps({"signature": signature, "event-data": event_data})


# --- Postmark: HTTP basic auth ------------------------------------------------


def basic_auth(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"authorization": f"Basic {encoded}"}


# --- SNS: SHA1withRSA / SHA256withRSA over the per-Type string to sign -------

SNS_CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-0000000000000000000000000000000a.pem"
)
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-events"


def new_sns_signer(
    valid_from: datetime = NOW - timedelta(days=1), valid_to: datetime = NOW + timedelta(days=30)
) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


def sns_sign(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2") -> dict[str, Any]:
    """Add SignatureVersion, SigningCertURL and Signature as SNS does."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode("utf-8"), padding.PKCS1v15(), algorithm)
    signed = dict(message)
    signed.setdefault("SigningCertURL", SNS_CERT_URL)
    signed["SignatureVersion"] = version
    signed["Signature"] = base64.b64encode(signature).decode("ascii")
    return signed


def sns_notification(
    ses_event: dict[str, Any],
    message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    timestamp: datetime = NOW,
    **extra: Any,
) -> dict[str, Any]:
    message = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(ses_event),
        "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    message.update(extra)
    return message


# --- Customer.io: hex HMAC-SHA256 of "v0:<timestamp>:<body>" ------------------


def customerio_headers(key: str, body: bytes, timestamp: int = NOW_TS) -> dict[str, str]:
    message = b"v0:" + str(timestamp).encode() + b":" + body
    return {
        "x-cio-signature": hmac.new(key.encode(), message, hashlib.sha256).hexdigest(),
        "x-cio-timestamp": str(timestamp),
    }


# --- generic: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")> ---------------


def generic_headers(secret: str, body: bytes, timestamp: int = NOW_TS) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"x-banditloop-signature": f"t={timestamp},v1={digest.hexdigest()}"}
