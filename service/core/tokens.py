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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import numpy.typing as npt

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
_STANDARD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
# ``_BODY`` as a numpy record (packed, big-endian), for minting a batch's bodies at once.
_BODY_DTYPE = np.dtype(
    [
        ("version", "u1"),
        ("kid", "u1", (2,)),
        ("experiment", ">u4"),
        ("epoch", ">u2"),
        ("arm", ">u4"),
        ("segment", ">u4"),
        ("propensity", ">f8"),
        ("policy_version", ">u4"),
        ("issued", ">u4"),
        ("nonce", "u1", (8,)),
    ]
)
assert _BODY_DTYPE.itemsize == _BODY.size
# From this many ids, ``mint_batch`` packs them as numpy records rather than one by one.
_BATCH_FROM = 16


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

    def digests(self, messages: Iterable[bytes]) -> list[bytes]:
        """The digest of each message: one call, the key's states bound once (a batch's
        ids and keyed nonces are a thousand HMACs each)."""
        inner_state, outer_state = self._inner.copy, self._outer.copy
        found = []
        for message in messages:
            inner = inner_state()
            inner.update(message)
            outer = outer_state()
            outer.update(inner.digest())
            found.append(outer.digest())
        return found


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

    def unit_hashes(self, unit_ids: Iterable[str]) -> list[str]:
        """``unit_hash`` of each unit id."""
        return [d.hex()[:32] for d in self._unit_mac.digests(u.encode() for u in unit_ids)]

    def keyed_digests(self, experiment_id: int, keys: Iterable[tuple[str, str]]) -> bytes:
        """``keyed_digest`` of each (unit hash, send id), packed back to back (32 bytes each)."""
        prefix = f"{experiment_id}|"
        messages = (f"{prefix}{unit_hash}|{send_id}".encode() for unit_hash, send_id in keys)
        return b"".join(self._unit_mac.digests(messages))

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

    def mint_batch(
        self,
        *,
        experiment_id: int,
        epoch: int,
        segment: str,
        policy_version: int,
        issued_at: datetime,
        arm_ids: Sequence[int] | npt.NDArray[np.int64],
        propensities: Sequence[float] | npt.NDArray[np.float64],
        nonces: bytes | None = None,
    ) -> list[str]:
        """The ids of a batch, each with its own arm and propensity: the same bytes as
        ``mint`` of each (``nonces``: 8 bytes per id, as ``mint``'s ``nonce``; random when
        None, drawn by one ``urandom`` call).

        The bodies are packed together as numpy records and the ids base64-encoded as one
        text, leaving one HMAC per id in Python (hashlib cannot batch): per id, ``mint``
        packed a struct and made three base64 calls. Each id followed by a zero byte is
        54 bytes, a whole number of base64 groups: 72 characters whose first 71 are the
        unpadded encoding of the id's 53 (the last is "A", dropped)."""
        n = len(arm_ids)
        if len(propensities) != n:
            raise ValueError("arm_ids and propensities must have one length")
        if n == 0:
            return []
        if nonces is None:
            nonces = os.urandom(8 * n)
        elif len(nonces) != 8 * n:
            raise ValueError(f"nonces must be 8 bytes per id, got {len(nonces)} for {n}")
        if n < _BATCH_FROM:  # numpy's set-up costs more than a few ids one by one
            return [
                self.mint(
                    experiment_id=experiment_id,
                    epoch=epoch,
                    arm_id=int(arm_ids[j]),
                    segment=segment,
                    propensity=float(propensities[j]),
                    policy_version=policy_version,
                    issued_at=issued_at,
                    nonce=nonces[8 * j : 8 * j + 8],
                )
                for j in range(n)
            ]
        arms = np.asarray(arm_ids)
        issued = int(issued_at.timestamp())
        # The fixed fields packed once by struct, so a value out of its field's range is
        # refused as ``mint`` refuses it (numpy would wrap it); then each arm id's.
        fixed = _BODY.pack(
            VERSION,
            self._signing_code,
            experiment_id,
            epoch,
            0,
            0,
            0.0,
            policy_version,
            issued,
            bytes(8),
        )
        if arms.dtype.kind not in "iu" or int(arms.min()) < 0 or int(arms.max()) > 0xFFFFFFFF:
            raise struct.error("arm id out of range for an id")
        bodies = np.frombuffer(fixed * n, dtype=_BODY_DTYPE).copy()
        bodies["arm"] = arms
        bodies["segment"] = segment_code(segment)
        bodies["propensity"] = np.asarray(propensities, dtype=np.float64)
        bodies["nonce"] = np.frombuffer(nonces, dtype=np.uint8).reshape(n, 8)
        raw = bodies.tobytes()
        size = _BODY.size
        bodies_each = (raw[start : start + size] for start in range(0, n * size, size))
        macs = np.frombuffer(b"".join(self._signing_mac.digests(bodies_each)), dtype=np.uint8)
        tokens = np.zeros((n, TOKEN_BYTES + 1), dtype=np.uint8)
        tokens[:, :size] = np.frombuffer(raw, dtype=np.uint8).reshape(n, size)
        tokens[:, size:TOKEN_BYTES] = macs.reshape(n, 32)[:, :MAC_BYTES]
        text = (
            binascii.b2a_base64(tokens.tobytes(), newline=False)
            .translate(_STANDARD_TO_URLSAFE)
            .decode("ascii")
        )
        step = TOKEN_CHARS + 1
        return [text[o : o + TOKEN_CHARS] for o in range(0, n * step, step)]

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
