"""gunicorn hooks: mark dead workers in prometheus-client's multiprocess directory."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(_server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
