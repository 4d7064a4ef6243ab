"""Segments: every run with its quality, the chosen run's portraits and charts (drawn by the
report's own functions), its members a page at a time and as CSV."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.background import BackgroundTask

from jingzhun.api.deps import get_state
from jingzhun.errors import NotFoundError
from jingzhun.report.i18n import Translator
from jingzhun.report.segment_sections import portrait_frame, run_cards, run_charts
from jingzhun.web.common import PAGE, lang_of, number, problem, render, signed_in

router = APIRouter(include_in_schema=False)


@router.get("/segments", response_class=HTMLResponse)
def segments_page(
    request: Request, run: str | None = None, segment: str | None = None, page: str | None = None
) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    runs = ws.segments.list()
    if runs.empty:
        return render(request, "segments.html", session, runs=[], info=None)
    try:
        info = dataclasses.asdict(ws.segments.get(run, lang=lang))
    except NotFoundError:
        return problem(request, session, 404, "no_such_run", value=run, back="/segments")
    run_id = info["run_id"]
    at = number(page, 1)
    shown, total = ws.segments.members_page(run_id, segment=segment or None, page=at, size=PAGE)
    pages = max(1, -(-total // PAGE))
    if at > pages:  # past the end: the last page
        at = pages
        shown, total = ws.segments.members_page(run_id, segment=segment or None, page=at, size=PAGE)
    # the portraits' names, in the page's language
    names = {p["segment"]: p["label"] for p in info["portraits"]}
    shown = shown.assign(label=shown["segment"].map(names).fillna(shown["label"]))
    return render(
        request,
        "segments.html",
        session,
        runs=runs.to_dict("records"),
        info=info,
        cards=run_cards(info, t),
        portraits=portrait_frame(info).to_dict("records"),
        charts=run_charts(ws, t, info),
        members=shown.to_dict("records"),
        member_count=total,
        segment=segment,
        page=at,
        pages=pages,
    )


@router.get("/segments/{run}/members.csv")
def segment_members_csv(request: Request, run: str) -> Response:
    signed_in(request)
    ws = get_state(request).readers.get()
    try:
        info = ws.segments.get(run)
    except NotFoundError:
        return Response(status_code=404)
    # Written by DuckDB to a temporary file and sent from it: a million members never sit in
    # memory as a frame and a string.
    folder = tempfile.mkdtemp(prefix="jz-members-")
    out = Path(folder) / "members.csv"
    ws.segments.export(out, info.run_id)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in info.run_id)
    return FileResponse(
        out,
        media_type="text/csv; charset=utf-8",
        filename=f"segment-{name}.csv",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


__all__ = ["router"]
