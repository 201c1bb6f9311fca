from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.service.measuring.adapters import signers


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return signers.new_ec_key()


@pytest.fixture(scope="session")
def other_ec_key() -> ec.EllipticCurvePrivateKey:
    return signers.new_ec_key()


@pytest.fixture(scope="session")
def sns_signer() -> tuple[rsa.RSAPrivateKey, bytes]:
    return signers.new_sns_signer()
