"""Schemathesis over /openapi.json on the real app, with a valid key of the scope each
operation needs; collects every failure instead of stopping at the first.

Used by tests/service/test_fuzz.py (a bounded run) and, for a longer run, from the shell:

    .venv/bin/python -m tests.service.fuzz --examples 200 --database sqlite:///fuzz.db
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.measuring.adapters.generic import sign

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')
# The experiment every generated `key` is swapped for half of the time, so the fuzzer
# reaches past the 404 of an unknown experiment into the operations themselves.
FUZZ_EXPERIMENT = "fuzz"
# Half of the webhook cases go to the generic provider, signed with this secret, so the
# fuzzer reaches the adapter and the pipeline behind the signature check.
GENERIC_SECRET = "whsec_fuzz_0123456789abcdef"
WEBHOOK_PATH = "/v1/webhooks/{provider}"


def scope_for(path: str) -> str | None:
    if path.startswith("/v1/choose"):
        return "decide"
    if path.startswith("/v1/events"):
        return "ingest"
    if path.startswith("/v1/webhooks") or path in ("/healthz", "/readyz"):
        return None
    return "admin"


@dataclass
class FuzzReport:
    requests: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests, {self.server_errors} 5xx, "
            f"{len(self.failures)} failures ({by_status})"
        )


def run(
    app: Any,
    make_keys: Callable[[], dict[str, str]],
    *,
    examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    seed: int = 0,
) -> FuzzReport:
    """Fuzz every operation of the app's OpenAPI document. ``make_keys`` gives a fresh key
    per scope for each operation: fuzzing DELETE /v1/admin/keys/{key_id} revokes keys."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            _fuzz_operation(operation, mode, make_keys(), examples, seed, report)
    return report


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    keys: dict[str, str],
    examples: int,
    seed: int,
    report: FuzzReport,
) -> None:
    scope = scope_for(operation.path)
    headers = {"Authorization": f"Bearer {keys[scope]}"} if scope else {}
    seen: set[str] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case: Any) -> None:
        if "key" in (case.path_parameters or {}) and report.requests % 2 == 0:
            case.path_parameters["key"] = FUZZ_EXPERIMENT
        sent = dict(headers)
        if operation.path == WEBHOOK_PATH and report.requests % 2 == 0:
            sent.update(_sign_generic(case))
        report.requests += 1
        try:
            response = case.call(headers=sent)
        except Exception as exc:  # the app raised through the transport: a 500 at best
            report.server_errors += 1
            _record(report, seen, f"{operation.label}: raised {exc!r}")
            return
        report.statuses[response.status_code] += 1
        if response.status_code >= 500:
            report.server_errors += 1
        if any(marker in response.text for marker in TRACEBACK_MARKERS):
            _record(report, seen, f"{operation.label}: traceback in a {response.status_code}")
        try:
            case.validate_response(response, checks=CHECKS, headers=sent)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # schemathesis raises a FailureGroup (an exception group)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            _record(
                report,
                seen,
                f"{operation.label} [{mode.value}] {response.status_code}: {first} "
                f"body={response.text[:200]!r}",
            )

    try:
        check()
    except Unsatisfiable:
        pass  # nothing to generate in this mode (an operation without parameters or body)


def _sign_generic(case: Any) -> dict[str, str]:
    """Point the case at the generic webhook and sign the bytes it will send (a JSON body
    is sent as ``json.dumps(body)``)."""
    if case.media_type != "application/json" or not isinstance(
        case.body, dict | list | str | int | float | bool
    ):
        return {}
    case.path_parameters["provider"] = "generic"
    body = json.dumps(case.body).encode()
    return {"X-Banditloop-Signature": sign(GENERIC_SECRET, body, int(time.time()))}


def _record(report: FuzzReport, seen: set[str], message: str) -> None:
    # One line per distinct failure of an operation, so a long run stays readable.
    head = message.split(" body=")[0]
    if head not in seen:
        seen.add(head)
        report.failures.append(message)


@contextmanager
def fuzz_app(
    database_url: str,
) -> Iterator[tuple[Any, Callable[[], dict[str, str]], Callable[[], None]]]:
    """A real app on its own database, with a key per scope and one experiment to reach."""
    from fastapi.testclient import TestClient

    from service.core import migrations
    from service.core.app import create_app
    from service.core.runtime import Runtime
    from service.core.settings import Settings

    migrations.upgrade(database_url)
    runtime = Runtime(
        Settings(
            database_url=database_url,
            signing_keys="t1:fuzz-signing-secret-0123456789",
            run_background=False,
            api_key_cache_seconds=0,
            generic_webhook_secret=GENERIC_SECRET,
            _env_file=None,  # type: ignore[call-arg]
        )
    )

    def make_keys() -> dict[str, str]:
        return {
            scope: runtime.api_keys.create(name=f"fuzz {scope}", scopes=[scope])[1]
            for scope in ("admin", "decide", "ingest")
        }

    app = create_app(runtime=runtime)
    with TestClient(app) as client:
        seed_experiment(client, make_keys()["admin"])
    yield app, make_keys, runtime.stop


def seed_experiment(client: Any, admin_key: str) -> None:
    body = {
        "key": FUZZ_EXPERIMENT,
        "name": "fuzz",
        "segment_attribute": "tier",
        "arms": [{"content": "A", "control": True}, {"content": "B"}],
    }
    response = client.post(
        "/v1/experiments", json=body, headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert response.status_code in (201, 409), response.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    database = args.database or f"sqlite:///{Path(tempfile.mkdtemp()) / 'fuzz.db'}"
    with fuzz_app(database) as (app, make_keys, _stop):
        report = run(app, make_keys, examples=args.examples)
    print(report.summary())
    for failure in report.failures:
        print(" -", failure)


if __name__ == "__main__":
    main()
