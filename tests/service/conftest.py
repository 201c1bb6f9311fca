"""Fixtures shared by the loop tests: one scripted OpenAI-compatible copywriter per process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulation.copywriter_server import CopywriterControl
from tests.service.loop_fixtures import serve_copywriter


@pytest.fixture(scope="session")
def copywriter_server() -> Iterator[tuple[str, CopywriterControl]]:
    yield from serve_copywriter()


@pytest.fixture
def copywriter(copywriter_server: tuple[str, CopywriterControl]) -> CopywriterControl:
    """The copywriter with its scenario and recorded requests reset for this test."""
    copywriter_server[1].reset()
    return copywriter_server[1]
