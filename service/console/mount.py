"""Mount the console's pages, static files and sign-in redirect on the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.console import experiments, libraries, reviewing, signin
from service.console.auth import SignInRequired


def install(app: FastAPI) -> None:
    static = Path(__file__).parent / "static"
    app.mount("/console/static", StaticFiles(directory=str(static)), name="console-static")
    for module in (signin, experiments, reviewing, libraries):
        app.include_router(module.router)
    app.add_exception_handler(SignInRequired, signin.sign_in_required)
