"""Decision ids are canonical: one decision, one spelling. Any other spelling that decodes
to the same bytes (unused low bits set, padding, characters base64 would skip) is an
altered token, rejected and dead-lettered, never stored as an orphan."""

from __future__ import annotations

import base64
import hmac
import random
import string
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from service.core.tokens import DecisionSigner, HmacSha256, InvalidToken
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, metric_total

SECRET = "a-signing-secret-for-the-token-tests"
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


@pytest.fixture
def signer() -> DecisionSigner:
    return DecisionSigner([("k1", SECRET)])


def mint(signer: DecisionSigner, nonce: bytes) -> str:
    return signer.mint(
        experiment_id=7,
        epoch=1,
        arm_id=3,
        segment="gold",
        propensity=0.25,
        policy_version=9,
        issued_at=datetime(2026, 3, 2, tzinfo=UTC),
        nonce=nonce,
    )


def low_bit_twins(token: str) -> list[str]:
    """The other spellings of the same bytes: the last character carries 2 unused bits."""
    index = ALPHABET.index(token[-1])
    return [token[:-1] + ALPHABET[(index & ~0b11) | bits] for bits in range(4)]


@pytest.mark.parametrize("nonce", [bytes(8), b"\xff" * 8, b"12345678"])
def test_a_token_whose_unused_low_bits_differ_is_rejected(signer: DecisionSigner, nonce: bytes):
    token = mint(signer, nonce)
    assert len(token) == 71
    assert signer.verify(token).arm_id == 3
    twins = [t for t in low_bit_twins(token) if t != token]
    assert len(twins) == 3
    for twin in twins:
        with pytest.raises(InvalidToken, match="canonical"):
            signer.verify(twin)


def test_non_canonical_base64url_is_rejected(signer: DecisionSigner):
    token = mint(signer, b"abcdefgh")
    for spelling in (
        token + "=",  # padding
        token + "==",
        token[:10] + "." + token[10:],  # a character base64 decoding would skip
        token[:10] + " " + token[10:],
        token[:10] + "+" + token[11:],  # standard, not url-safe, alphabet
        token[:10] + "/" + token[11:],
        token[:10] + "\x00" + token[11:],
        token[:10] + "é" + token[11:],
    ):
        with pytest.raises(InvalidToken):
            signer.verify(spelling)


def test_low_bit_twin_posted_as_an_event_is_dead_lettered_not_an_orphan(
    client: TestClient, admin, decide, ingest, runtime
):
    exp = create_random_experiment(client, admin, arms=2)
    token = decide_many(client, decide, runtime, exp["key"], 1)[0]["decision_id"]
    (twin,) = [t for t in low_bit_twins(token) if t != token][:1]
    events = [
        {"event_id": "twin", "decision_id": twin, "type": "click"},
        {"event_id": "real", "decision_id": token, "type": "click"},
    ]
    body = client.post("/v1/events", json=events, headers=ingest).json()
    assert body["accepted"] == 1
    assert body["orphans"] == 0
    [rejected] = body["rejected"]
    assert rejected["event_id"] == "twin"
    assert "decision id" in rejected["reason"]
    assert metric_total(runtime, "click") == 1


@pytest.mark.parametrize("key_size", [0, 1, 32, 64, 65, 200])
def test_the_precomputed_hmac_is_hmac_sha256(key_size: int) -> None:
    rng = random.Random(key_size)
    key = bytes(rng.randrange(256) for _ in range(key_size))
    mac = HmacSha256(key)
    for size in (0, 1, 41, 64, 1000):
        message = bytes(rng.randrange(256) for _ in range(size))
        assert mac.digest(message) == hmac.digest(key, message, "sha256")


def test_ids_minted_for_a_batch_are_the_single_mint_with_fresh_nonces(
    signer: DecisionSigner,
) -> None:
    at = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    arms = [(3, 0.25), (4, 0.5), (3, 0.25), (11, 0.125)]
    ids = signer.mint_batch(
        experiment_id=7, epoch=2, segment="gold", policy_version=9, issued_at=at,
        arm_ids=[a for a, _ in arms], propensities=[p for _, p in arms],
    )  # fmt: skip
    assert len(set(ids)) == len(arms)
    nonces = set()
    for token, (arm_id, propensity) in zip(ids, arms, strict=True):
        decoded = signer.verify(token)
        assert (decoded.experiment_id, decoded.epoch, decoded.arm_id) == (7, 2, arm_id)
        assert decoded.propensity == propensity
        assert decoded.policy_version == 9
        assert decoded.issued_at == int(at.timestamp())
        nonces.add(decoded.nonce)
        # Byte for byte what mint makes from the same fields and nonce.
        assert token == signer.mint(
            experiment_id=7,
            epoch=2,
            arm_id=arm_id,
            segment="gold",
            propensity=propensity,
            policy_version=9,
            issued_at=at,
            nonce=decoded.nonce,
        )
    assert len(nonces) == len(arms)


def test_an_id_signed_by_a_retired_key_still_verifies_with_its_own_mac() -> None:
    old = DecisionSigner([("k1", "the-old-secret-0123456789abcdef0123")])
    rotated = DecisionSigner(
        [
            ("k2", "the-new-secret-0123456789abcdef0123"),
            ("k1", "the-old-secret-0123456789abcdef0123"),
        ]
    )
    token = mint(old, b"\x01" * 8)
    assert rotated.verify(token).kid == "k1"
    stranger = DecisionSigner([("k1", "another-secret-0123456789abcdef012345")])
    with pytest.raises(InvalidToken, match="signature"):
        stranger.verify(token)


def _verdict(signer: DecisionSigner, token: object) -> int | str:
    try:
        return signer.verify(token).experiment_id  # type: ignore[arg-type]
    except InvalidToken as exc:
        return f"InvalidToken: {exc}"


def test_verify_many_gives_each_id_the_verdict_and_message_of_verify(
    signer: DecisionSigner,
) -> None:
    """A mixed batch: good ids of two keys (one retired), every kind of bad one, and a
    character outside the alphabet (the whole batch then takes the one-by-one path)."""
    rotated = DecisionSigner([("k2", "a-newer-signing-secret-0123456789"), ("k1", SECRET)])
    good = [mint(signer, bytes([n]) * 8) for n in range(5)]
    newer = mint(rotated, b"\x07" * 8)
    token = good[0]
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    unknown_version = _resign(bytes([2]) + bytes(raw[1:41]))
    tampered = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    twin = next(t for t in low_bit_twins(token) if t != token)
    stranger = mint(DecisionSigner([("k9", "someone-else-0123456789abcdef0123")]), bytes(8))
    cases = [
        *good,
        newer,
        tampered,
        twin,
        unknown_version,
        stranger,
        token + "=",
        token[:70],
        "",
        token[:10] + "+" + token[11:],
        12345,
        None,
        good[1],  # a repeat verifies again
    ]
    expected = [_verdict(rotated, t) for t in cases]
    assert expected[:6] == [7] * 6
    assert all(isinstance(v, str) for v in expected[6:-1])

    def as_verdicts(found: list[int | InvalidToken]) -> list[int | str]:
        return [v if isinstance(v, int) else f"InvalidToken: {v}" for v in found]

    assert as_verdicts(rotated.verify_many(cases)) == expected  # type: ignore[arg-type]
    without_alphabet_misfit = [t for t in cases if t != token[:10] + "+" + token[11:]]
    assert as_verdicts(rotated.verify_many(without_alphabet_misfit)) == [  # type: ignore[arg-type]
        _verdict(rotated, t) for t in without_alphabet_misfit
    ]
    assert rotated.verify_many([]) == []


def _resign(body: bytes) -> str:
    """A well-signed id over an arbitrary 41-byte body (to reach the checks past the mac)."""
    mac = hmac.digest(SECRET.encode(), body, "sha256")[:12]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()
