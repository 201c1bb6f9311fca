"""Events per second through the SendGrid webhook (signed 1,000-event batches) on PostgreSQL,
against POST /v1/events with the same events in the same run.

Run: .venv/bin/python bench/webhooks/run.py [--repeats 15] [--databases postgres]

The service runs in-process under a real uvicorn on 127.0.0.1 (see bench/ingest/run.py);
each SendGrid batch is signed beforehand with a real ECDSA P-256 key, as SendGrid signs
(timestamp + raw body), so the timings include verifying the signature but not making it.
Both contenders carry one click per new decision; they are interleaved and medians are
reported.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `bench` as a namespace package

from bench.ingest.run import (  # noqa: E402
    BATCH,
    Service,
    api_events,
    create_database,
    create_experiment,
    drop_database,
    interleaved,
    make_decisions,
    post_batch,
    serve,
)
from service.models import Decision  # noqa: E402


def sendgrid_events(decisions: list[Decision], prefix: str, timestamp: int) -> list[dict[str, Any]]:
    """SendGrid Event Webhook clicks, decision id in custom_args (top-level keys)."""
    return [
        {
            "email": f"user{i}@example.com",
            "timestamp": timestamp,
            "event": "click",
            "url": "https://shop.example.com/spring",
            "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "sg_event_id": f"{prefix}-{i}",
            "sg_message_id": f"{prefix}-{i}.filter0001.16648.5515E0B88.0",
            "bl_decision": d.id,
        }
        for i, d in enumerate(decisions)
    ]


def sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": str(timestamp),
    }


def bench_database(kind: str, repeats: int) -> dict[str, float]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    url = create_database(kind)
    try:
        with serve(url, sendgrid_public_key=base64.b64encode(public).decode()) as service:
            rounds = _rounds(service, key, repeats + 1)
            timings = interleaved(rounds)
        return {name: BATCH / statistics.median(values[1:]) for name, values in timings.items()}
    finally:
        drop_database(kind)


def _rounds(
    service: Service, key: ec.EllipticCurvePrivateKey, total: int
) -> list[dict[str, Callable[[], object]]]:
    experiment = create_experiment(service)
    webhook_decisions = make_decisions(service, experiment, total * BATCH)
    api_decisions = make_decisions(service, experiment, total * BATCH)
    rounds: list[dict[str, Callable[[], object]]] = []
    for r in range(total):
        now = int(time.time())
        webhook_body = json.dumps(
            sendgrid_events(webhook_decisions[r * BATCH : (r + 1) * BATCH], f"sg{r}", now)
        ).encode()
        signed = sign(key, webhook_body, now)
        api_body = json.dumps(api_events(api_decisions[r * BATCH : (r + 1) * BATCH], f"a{r}"))
        rounds.append(
            {
                "sendgrid": lambda b=webhook_body, h=signed: post_batch(
                    service, "/v1/webhooks/sendgrid", b, h
                ),
                "events": lambda b=api_body.encode(): post_batch(
                    service, "/v1/events", b, service.ingest
                ),
            }
        )
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per contender")
    parser.add_argument("--databases", default="postgres")
    arguments = parser.parse_args()

    print(
        f"batches of {BATCH:,} click events, one new decision each; "
        f"median of {arguments.repeats} interleaved repeats"
    )
    print(f"{'database':<10} {'SendGrid events/s':>18} {'/v1/events events/s':>20} {'ratio':>6}")
    for kind in arguments.databases.split(","):
        rates = bench_database(kind, arguments.repeats)
        webhook, api = rates["sendgrid"], rates["events"]
        print(f"{kind:<10} {webhook:>18,.0f} {api:>20,.0f} {webhook / api:>6.2f}")


if __name__ == "__main__":
    main()
