from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.copywriter import running_copywriter
from tests.fakes.copywriter_server import CopywriterControl


@pytest.fixture(scope="session")
def copywriter_server() -> Iterator[tuple[str, CopywriterControl]]:
    with running_copywriter() as server:
        yield server


@pytest.fixture
def copywriter(copywriter_server: tuple[str, CopywriterControl]) -> CopywriterControl:
    _, control = copywriter_server
    control.reset()
    return control


@pytest.fixture
def copywriter_url(copywriter_server: tuple[str, CopywriterControl]) -> str:
    return copywriter_server[0]


@pytest.fixture
def client(copywriter_url: str, copywriter: CopywriterControl) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=copywriter_url, api_key="test-key", timeout=2.0, max_retries=1
    ) as llm_client:
        yield llm_client
