"""gunicorn hooks: mark dead workers in prometheus-client's multiprocess directory."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(_server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


# gunicorn 25.1+ opens a control socket under $HOME/.gunicorn; the image's user cannot write
# its home (/app), and nothing here uses `gunicornc`. Older versions ignore the name.
control_socket_disable = True
