"""Jinja2 templates of the console and the one helper every page renders through."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from service.console import words
from service.console.auth import Reviewer

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(pct=words.pct, short=words.short, exp=math.exp)
templates.env.globals.update(interval=words.interval, too_early=words.too_early)


def page(
    request: Request,
    template: str,
    reviewer: Reviewer | None,
    /,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context.setdefault("error", None)
    context.setdefault("notice", request.query_params.get("notice"))
    return templates.TemplateResponse(
        request,
        template,
        {"reviewer": reviewer, **context},
        status_code=status_code,
    )


def error_message(exc: Exception) -> str:
    return getattr(exc, "message", str(exc))
