"""`banditloop serve --workers N`: gunicorn with uvicorn workers, run in this process.

The app is imported once in the master and forked (``preload_app``): workers start in a
fraction of the time it takes four interpreters to import numpy, scipy and FastAPI each,
and a broken import fails the master once instead of every worker. Engines, threads and
clients are created per worker in the app's lifespan, after the fork.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess


def child_exit(_server: Any, worker: Any) -> None:
    """Mark a dead worker's files in prometheus-client's multiprocess directory."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class ServeApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, *, host: str, port: int, workers: int) -> None:
        self._options: dict[str, Any] = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "uvicorn.workers.UvicornWorker",
            "graceful_timeout": 20,
            "preload_app": True,
            "child_exit": child_exit,
            # gunicorn's control socket defaults to one path per user: two replicas on
            # one host would fight over it, and the service never uses it.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from service.main import app

        return app
