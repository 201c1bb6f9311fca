"""Learnings libraries (scope review): the libraries and their settings, their learnings
(JSON or Markdown), the tag effects across their campaigns, and what the loop earned over
the holdout. A library's settings are the loop's, like an experiment's brief and loop
settings: a review key may change them (an admin key too)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import PlainTextResponse, Response

from service.core.deps import ReviewKey, SessionDep
from service.libraries import view as view
from service.libraries.schemas import (
    LibraryChangeOut,
    LibraryLearnings,
    LibraryList,
    LibraryOut,
    LibrarySettings,
    LibraryTagEffects,
    LoopValueOut,
)

router = APIRouter(tags=["libraries"])

MARKDOWN = "text/markdown; charset=utf-8"
LibraryName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


@router.get("/v1/libraries", response_model=LibraryList)
def list_libraries(session: SessionDep, _caller: ReviewKey) -> LibraryList:
    return LibraryList(libraries=view.list_libraries(session))


@router.get("/v1/libraries/{name}", response_model=LibraryOut)
def read_library(name: LibraryName, session: SessionDep, _caller: ReviewKey) -> LibraryOut:
    return view.library_out(session, name)


@router.patch("/v1/libraries/{name}", response_model=LibraryChangeOut)
def patch_library(
    name: LibraryName, body: LibrarySettings, session: SessionDep, caller: ReviewKey
) -> LibraryChangeOut:
    """Change the description, cap or half-life. A lowered cap applies at once: the least
    supported active learnings over it are pruned, and listed in `pruned`."""
    return view.update_library(session, name, body, actor=caller.name)


@router.get(
    "/v1/libraries/{name}/learnings",
    response_model=LibraryLearnings,
    responses={200: {"content": {"text/markdown": {}}}},
)
def library_learnings(
    name: LibraryName,
    session: SessionDep,
    _caller: ReviewKey,
    format: Literal["json", "markdown"] | None = None,
    accept: Annotated[str | None, Header()] = None,
) -> LibraryLearnings | Response:
    """Every learning of the library with where it held and failed, as JSON or as the
    Markdown file (`?format=markdown` or `Accept: text/markdown`)."""
    if format == "markdown" or (format is None and "text/markdown" in (accept or "")):
        return PlainTextResponse(view.learnings_markdown(session, name), media_type=MARKDOWN)
    return view.learnings(session, name)


@router.get("/v1/libraries/{name}/tag-effects", response_model=LibraryTagEffects)
def library_tag_effects(
    name: LibraryName,
    session: SessionDep,
    _caller: ReviewKey,
    segment: Annotated[str | None, Query(max_length=128)] = None,
    channel: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> LibraryTagEffects:
    """Each tag's effect on the success odds across the library's campaigns, with an
    experiment-level and an arm-level random effect, and how many campaigns support it."""
    return view.tag_effects(session, name, segment=segment, channel=channel)


@router.get("/v1/libraries/{name}/value", response_model=LoopValueOut)
def library_value(name: LibraryName, session: SessionDep, _caller: ReviewKey) -> LoopValueOut:
    """By month: the served policy's lift over the holdout and the successes it gained,
    over the library's experiments."""
    return view.library_value(session, name)
