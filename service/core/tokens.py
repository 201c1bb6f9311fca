"""Signed decision ids: compact, self-describing, verifiable on any replica.

Layout (53 bytes, 71 base64url characters, so it fits an SES message tag):
version(1) kid(2) experiment(4) epoch(2) arm(4) segment(4) propensity(8)
policy_version(4) time(4) nonce(8) mac(12). The kid is a 2-byte digest of the
key id, so old keys stay valid for verification after a rotation; the mac is a
truncated HMAC-SHA256 over everything before it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

VERSION = 1
_BODY = struct.Struct(">B2sIHIIdII8s")
MAC_BYTES = 12
TOKEN_BYTES = _BODY.size + MAC_BYTES
MAX_TOKEN_CHARS = 80
# 53 bytes are 424 bits; 71 base64url characters carry 426, so the last character has two
# unused low bits. Only the encoding we mint is accepted: same alphabet, no padding, those
# bits zero, so one decision has exactly one id (never two spellings, one an "orphan").
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
TOKEN_CHARS = 71
# ``verify_many`` decodes a batch as one base64 text: each id followed by an "A" (six zero
# bits) is 72 characters, 54 bytes: the token's 53, then a byte holding the last
# character's two unused bits (zero exactly when the id is in canonical form).
_RECORD = struct.Struct(_BODY.format + f"{MAC_BYTES}sB")
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class InvalidToken(ValueError):
    """The token is malformed, signed by an unknown key, or altered."""


@dataclass(frozen=True, slots=True)
class DecisionToken:
    experiment_id: int
    epoch: int
    arm_id: int
    segment_code: int
    propensity: float
    policy_version: int
    issued_at: int
    nonce: bytes
    kid: str


@lru_cache(maxsize=4096)
def segment_code(segment: str) -> int:
    return int.from_bytes(hashlib.sha256(segment.encode()).digest()[:4], "big")


class HmacSha256:
    """HMAC-SHA256 under one key, with the key's inner and outer states computed once.

    RFC 2104 by hand: every id and unit hash is one HMAC, and setting the key up again on
    each call (what ``hmac.digest`` does) is half of its cost."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _kid_code(kid: str) -> bytes:
    return hashlib.sha256(kid.encode()).digest()[:2]


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


class DecisionSigner:
    """Mints and verifies decision ids; also derives unit hashes and keyed nonces."""

    def __init__(self, keys: list[tuple[str, str]], *, unit_key: bytes | None = None) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._signing_kid, first_secret = keys[0]
        self._signing_secret = first_secret.encode()
        self._by_code = {_kid_code(kid): (kid, secret.encode()) for kid, secret in keys}
        if len(self._by_code) != len(keys):
            raise ValueError("signing key ids must be distinct")
        self._signing_code = _kid_code(self._signing_kid)
        self._unit_key = unit_key or hmac.new(self._signing_secret, b"unit-hash", "sha256").digest()
        self._unit_mac = HmacSha256(self._unit_key)
        self._signing_mac = HmacSha256(self._signing_secret)
        self._verify_macs = {
            code: HmacSha256(secret) for code, (_, secret) in self._by_code.items()
        }

    def unit_hash(self, unit_id: str) -> str:
        """Keyed HMAC of a unit id: what is stored instead of the id itself."""
        return self._unit_mac.digest(unit_id.encode()).hex()[:32]

    def keyed_digest(self, experiment_id: int, unit_hash: str, send_id: str) -> bytes:
        """Deterministic bytes for a keyed decision: its nonce and its sampling uniforms."""
        message = f"{experiment_id}|{unit_hash}|{send_id}".encode()
        return self._unit_mac.digest(message)

    def mint(
        self,
        *,
        experiment_id: int,
        epoch: int,
        arm_id: int,
        segment: str,
        propensity: float,
        policy_version: int,
        issued_at: datetime,
        nonce: bytes | None = None,
    ) -> str:
        body = _BODY.pack(
            VERSION,
            self._signing_code,
            experiment_id,
            epoch,
            arm_id,
            segment_code(segment),
            propensity,
            policy_version,
            int(issued_at.timestamp()),
            nonce if nonce is not None else os.urandom(8),
        )
        mac = self._signing_mac.digest(body)[:MAC_BYTES]
        return _b64encode(body + mac)

    def mint_many(
        self,
        *,
        experiment_id: int,
        epoch: int,
        segment: str,
        policy_version: int,
        issued_at: datetime,
        arms: Sequence[tuple[int, float]],
    ) -> list[str]:
        """Unkeyed ids for a batch, each (arm id, propensity) its own: the same bytes as
        ``mint`` with a random nonce, with the fixed fields and the nonces' randomness (one
        ``urandom`` call, not one per id: that call was a third of an unkeyed batch) set up
        once."""
        nonces = os.urandom(8 * len(arms))
        code = segment_code(segment)
        issued = int(issued_at.timestamp())
        pack = _BODY.pack
        digest = self._signing_mac.digest
        signing_code = self._signing_code
        ids = []
        for n, (arm_id, propensity) in enumerate(arms):
            body = pack(
                VERSION,
                signing_code,
                experiment_id,
                epoch,
                arm_id,
                code,
                propensity,
                policy_version,
                issued,
                nonces[8 * n : 8 * n + 8],
            )
            ids.append(_b64encode(body + digest(body)[:MAC_BYTES]))
        return ids

    def verify(self, token: str) -> DecisionToken:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("decision id has the wrong length")
        if not _TOKEN_CHARS.fullmatch(token):
            raise InvalidToken("decision id is not base64url")
        try:
            raw = _b64decode(token)
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("decision id is not base64url") from exc
        if len(raw) != TOKEN_BYTES:
            raise InvalidToken("decision id has the wrong length")
        if _b64encode(raw) != token:
            raise InvalidToken("decision id is not in canonical form")
        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        fields = _BODY.unpack(body)
        if fields[0] != VERSION:
            raise InvalidToken("decision id has an unknown version")
        key = self._by_code.get(fields[1])
        if key is None:
            raise InvalidToken("decision id is signed by an unknown key")
        kid = key[0]
        expected = self._verify_macs[fields[1]].digest(body)[:MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise InvalidToken("decision id signature does not match")
        return DecisionToken(
            experiment_id=fields[2],
            epoch=fields[3],
            arm_id=fields[4],
            segment_code=fields[5],
            propensity=fields[6],
            policy_version=fields[7],
            issued_at=fields[8],
            nonce=fields[9],
            kid=kid,
        )

    def verify_many(self, tokens: Sequence[str]) -> list[int | InvalidToken]:
        """For each token, the experiment id it carries or why it does not verify: the
        same verdicts as ``verify`` (the same messages too), without a token object and two
        base64 passes per id (1,000 ids: about 1.5 ms instead of 4.7). Only an id that fails
        the batch's checks goes through ``verify``, to name the reason."""
        passed = self._verify_batch(tokens)
        verdicts: list[int | InvalidToken] = []
        for n, token in enumerate(tokens):
            experiment = passed.get(n)
            if experiment is None:
                try:
                    experiment = self.verify(token).experiment_id
                except InvalidToken as exc:
                    verdicts.append(exc)
                    continue
            verdicts.append(experiment)
        return verdicts

    def _verify_batch(self, tokens: Sequence[str]) -> dict[int, int]:
        """{position: experiment id} of the tokens that verify, checked together: the ids of
        the minted length are decoded as one base64 text and unpacked by one
        ``iter_unpack``, leaving one HMAC per id in Python. A batch with any character
        outside the alphabet is left to ``verify`` entirely."""
        batch = [n for n, t in enumerate(tokens) if type(t) is str and len(t) == TOKEN_CHARS]
        text = "A".join(tokens[n] for n in batch) + "A"
        if not batch or not _TOKEN_CHARS.fullmatch(text):
            return {}
        raw = binascii.a2b_base64(
            text.encode("ascii").translate(_URLSAFE_TO_STANDARD), strict_mode=True
        )
        macs = self._verify_macs
        step, size = _RECORD.size, _BODY.size
        passed: dict[int, int] = {}
        for n, start, fields in zip(
            batch, range(0, len(raw), step), _RECORD.iter_unpack(raw), strict=True
        ):
            mac = macs.get(fields[1])
            # fields[11]: the last character's unused bits (non-zero: not canonical).
            if fields[0] != VERSION or fields[11] != 0 or mac is None:
                continue
            if hmac.compare_digest(fields[10], mac.digest(raw[start : start + size])[:MAC_BYTES]):
                passed[n] = fields[2]
        return passed

    @staticmethod
    def issued_at(token: DecisionToken) -> datetime:
        return datetime.fromtimestamp(token.issued_at, UTC)
