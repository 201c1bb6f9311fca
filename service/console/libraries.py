"""Console pages of a learnings library: its learnings and where each holds, the tag
effects across its campaigns, and what the loop earned over the holdout each month."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from service.console.auth import ReviewerDep
from service.console.render import page
from service.core.deps import SessionDep
from service.libraries import view as view

router = APIRouter(prefix="/console")


@router.get("/libraries/{name}", response_class=HTMLResponse, include_in_schema=False)
def library_page(
    name: str, request: Request, session: SessionDep, reviewer: ReviewerDep
) -> Response:
    library = view.library_out(session, name)
    items = view.learnings(session, name).learnings
    return page(
        request,
        "library.html",
        reviewer,
        library=library,
        active=[item for item in items if item.status == "active"],
        past=[item for item in items if item.status != "active"],
        effects=view.tag_effects(session, name, segment=None, channel=None),
        value=view.library_value(session, name),
    )


@router.get("/libraries/{name}/learnings.md", include_in_schema=False)
def library_download(name: str, session: SessionDep, _reviewer: ReviewerDep) -> Response:
    return PlainTextResponse(
        view.learnings_markdown(session, name),
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-library.md"'},
    )
