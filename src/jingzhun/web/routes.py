"""The dashboard's pages: sign-in, the language switch, the overview.

Every page but sign-in needs a session (:mod:`jingzhun.web.session`); without one, the browser
goes to sign-in and then back to the page it asked for. Every form that changes something
carries the session's CSRF token; one without it (or with another's) is refused with 403.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from jingzhun.api.deps import get_state
from jingzhun.errors import NotFoundError
from jingzhun.ingest import read as ingest_read
from jingzhun.report.html import figure
from jingzhun.report.i18n import LANGS, Translator
from jingzhun.report.segment_sections import portrait_frame, run_cards, run_charts
from jingzhun.store import apikeys
from jingzhun.web.i18n import LANG_COOKIE, pick_lang
from jingzhun.web.session import COOKIE, Session, Sessions

router = APIRouter(include_in_schema=False)

_ENV = Environment(
    loader=PackageLoader("jingzhun.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def fmt(value: float | None, kind: str, lang: str) -> str:
    """A number as the language writes it: 1,234,567 / 12.3% in English; 123.5万 in Chinese
    once it passes ten thousand."""
    if value is None or value != value:
        return "–"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "change":
        return f"{value * 100:+.1f}%"
    if lang == "zh" and abs(value) >= 100_000_000:
        return f"{value / 100_000_000:,.2f}亿"
    if lang == "zh" and abs(value) >= 10_000:
        return f"{value / 10_000:,.1f}万"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if kind == "money" else f"{value:,.1f}"


_ENV.globals["fmt"] = fmt
#: Rows in a page of a long table.
PAGE = 50
#: Periods the overview offers, in days.
PERIODS = (7, 30, 90)
#: The files under /static: (package, resource, media type).
_STATIC = {
    "plotly.min.js": ("plotly", "package_data/plotly.min.js", "text/javascript"),
    "dashboard.css": ("jingzhun.web", "static/dashboard.css", "text/css"),
}


class _SignIn(Exception):
    """The request has no valid session: send the browser to sign-in."""


def sessions(request: Request) -> Sessions:
    return get_state(request).sessions


def _lang(request: Request) -> str:
    return pick_lang(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _local(path: str | None) -> str:
    """``path`` when it is a page of this server, else the overview (no open redirect)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return "/"


def _session(request: Request) -> Session:
    s = sessions(request).read(request.cookies.get(COOKIE))
    if s is None:
        raise _SignIn
    store = get_state(request).readers.get().store
    if not any(k.key_id == s.key_id and k.active for k in apikeys.list_keys(store)):
        raise _SignIn  # the key was revoked since
    return s


def _render(request: Request, template: str, session: Session | None, status: int = 200,
            **context: Any) -> HTMLResponse:  # fmt: skip
    lang = _lang(request)
    t = Translator(lang)
    body = _ENV.get_template(template).render(
        t=t,
        lang=lang,
        langs=LANGS,
        session=session,
        csrf=sessions(request).csrf(session) if session else "",
        path=request.url.path,
        here=quote(_asked(request)),
        **context,
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline' "
            "'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _asked(request: Request) -> str:
    """The page asked for: path and query."""
    return str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")


def _to_sign_in(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(_asked(request), safe='')}", status_code=303)


# -- sign-in ----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _render(request, "login.html", None, next=_local(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    target = _local(form.get("next"))
    state = get_state(request)
    key = state.keys.verify(state.readers.get().store, form.get("key", "").strip())
    error = None
    if key is None:
        error = "bad_key"
    elif not apikeys.allows(key.scope, "read"):
        error = "scope_too_small"
    if error is not None or key is None:
        time.sleep(0.2)  # a guesser gets five tries a second per connection, not thousands
        return _render(request, "login.html", None, status=401, next=target, error=error)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        sessions(request).issue(key.key_id, key.name, key.scope),
        max_age=int(sessions(request).lifetime),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    try:
        session = _session(request)
    except _SignIn:
        return RedirectResponse("/login", status_code=303)
    if not sessions(request).check_csrf(session, (await _form(request)).get("csrf")):
        return _render(request, "problem.html", session, status=403, message="forbidden")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: str = "/") -> Response:
    response = RedirectResponse(_local(next), status_code=303)
    if lang in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict", path="/")
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    found = _STATIC.get(name)
    if found is None:
        return Response(status_code=404)
    package, path, media = found
    data = resources.files(package).joinpath(path).read_bytes()
    return Response(data, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


# -- pages ------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, days: int = 30) -> Response:
    try:
        session = _session(request)
    except _SignIn:
        return _to_sign_in(request)
    days = days if days in PERIODS else 30
    ws = get_state(request).readers.get()
    t = Translator(_lang(request))
    summary = ingest_read.summary(ws.store)
    if not summary["events_to"]:
        return _render(request, "overview.html", session, empty=True, days=days, periods=PERIODS)
    end = pd.Timestamp(summary["events_to"]).to_pydatetime() + timedelta(microseconds=1)
    now, before = _period(ws, end, days), _period(ws, end - timedelta(days=days), days)
    kpis = [
        _kpi(t("users"), summary["tables"]["users"], None, "int"),
        _kpi(t("avg_daily_active"), now["active"], before["active"], "float"),
        _kpi(t("orders"), now["orders"], before["orders"], "int"),
        _kpi(t("revenue"), now["revenue"], before["revenue"], "money"),
        _kpi(t("aov"), now["aov"], before["aov"], "money"),
        _kpi(t("daily_conversion"), now["conversion"], before["conversion"], "pct"),
    ]
    charts = [_trend_chart(now["daily"], t), _funnel_chart(ws, end, days, t), _cohort_chart(ws, t)]
    return _render(
        request,
        "overview.html",
        session,
        empty=False,
        days=days,
        periods=PERIODS,
        kpis=kpis,
        charts=[c for c in charts if c],
        quarantine=summary["quarantine_open"],
        tables=summary["tables"],
    )


def _period(ws: Any, end: Any, days: int) -> dict[str, Any]:
    """The overview's figures for the ``days`` before ``end``."""
    try:
        daily = ws.profiles.trends(since=end - timedelta(days=days), until=end).tables["daily"]
    except NotFoundError:
        daily = pd.DataFrame(columns=["day", "actives", "buyers", "orders", "revenue"])
    orders, revenue = float(daily["orders"].sum()), float(daily["revenue"].sum())
    actives = float(daily["actives"].sum())
    return {
        "daily": daily,
        "active": actives / days,
        "orders": orders,
        "revenue": revenue,
        "aov": revenue / orders if orders else None,
        "conversion": float(daily["buyers"].sum()) / actives if actives else None,
    }


def _kpi(label: str, value: float | None, before: float | None, kind: str) -> dict[str, Any]:
    change = None
    if value is not None and before:
        change = value / before - 1
    return {"label": label, "value": value, "kind": kind, "change": change}


def _trend_chart(daily: pd.DataFrame, t: Translator) -> str | None:
    if daily.empty:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=daily["day"], y=daily["actives"], name=t("visitors"), opacity=0.55))
    fig.add_trace(
        go.Scatter(x=daily["day"], y=daily["revenue"], name=t("revenue"), mode="lines"),
        secondary_y=True,
    )
    fig.update_layout(title=t("daily_trends"), xaxis_title=t("day"))
    fig.update_yaxes(title_text=t("visitors"), secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text=t("revenue"), secondary_y=True, rangemode="tozero")
    # Plotly's own date labels are English; Chinese dates are written out.
    fig.update_xaxes(tickformat="%m月%d日" if t.lang == "zh" else "%b %d")
    return figure(fig)


def _funnel_chart(ws: Any, end: Any, days: int, t: Translator) -> str | None:
    import plotly.graph_objects as go

    try:
        steps = ws.profiles.funnel(since=end - timedelta(days=days), until=end).tables["steps"]
    except NotFoundError:
        return None
    if steps.empty:
        return None
    labels = [t(s) for s in steps["step"]]
    fig = go.Figure(
        go.Funnel(y=labels, x=steps["visitors"], texttemplate="%{value:,}<br>%{percentInitial:.0%}")
    )
    fig.update_layout(title=t("web_funnel"), yaxis_title=t("funnel_step"))
    return figure(fig, height=320)


def _cohort_chart(ws: Any, t: Translator) -> str | None:
    import plotly.graph_objects as go

    try:
        retention = ws.profiles.cohorts(months=12).tables["retention"]
    except NotFoundError:
        return None
    months = [c for c in retention.columns if c.startswith("m") and c[1:].isdigit()]
    if retention.empty or not months:
        return None
    z = retention[months].to_numpy(dtype=float) * 100
    # Month 0 is 100% by definition: the colours span the later months, where cohorts differ.
    later = z[:, 1:][~np.isnan(z[:, 1:])] if z.shape[1] > 1 else np.array([100.0])
    top = float(np.percentile(later, 98)) if later.size else 100.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[c[1:] for c in months],
            y=[_month(c, t.lang) for c in retention["cohort"]],
            colorscale="Blues",
            zmin=0,
            zmax=max(top, 1.0),
            colorbar={"title": "%"},
            hovertemplate="%{y} · m%{x}: %{z:.1f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title=t("web_cohorts"), xaxis_title=t("months_after"), yaxis_title=t("web_cohort"),
        yaxis={"autorange": "reversed", "type": "category"},
    )  # fmt: skip
    return figure(fig, height=max(320, 24 * len(retention) + 120))


@router.get("/segments", response_class=HTMLResponse)
def segments_page(
    request: Request, run: str | None = None, segment: str | None = None, page: int = 1
) -> Response:
    try:
        session = _session(request)
    except _SignIn:
        return _to_sign_in(request)
    ws = get_state(request).readers.get()
    lang = _lang(request)
    t = Translator(lang)
    runs = ws.segments.list()
    if runs.empty:
        return _render(request, "segments.html", session, runs=[], info=None)
    try:
        info = dataclasses.asdict(ws.segments.get(run, lang=lang))
    except NotFoundError:
        return _render(request, "problem.html", session, status=404, title="not_found",
                       message="no_such_run", value=run)  # fmt: skip
    members = ws.segments.members(info["run_id"])
    # the portraits' names, in the page's language
    names = {p["segment"]: p["label"] for p in info["portraits"]}
    members = members.assign(label=members["segment"].map(names).fillna(members["label"]))
    if segment:
        members = members[members["segment"] == segment]
    pages = max(1, -(-len(members) // PAGE))
    page = min(max(page, 1), pages)
    shown = members.iloc[(page - 1) * PAGE : page * PAGE]
    return _render(
        request,
        "segments.html",
        session,
        runs=runs.to_dict("records"),
        info=info,
        cards=run_cards(info, t),
        portraits=portrait_frame(info).to_dict("records"),
        charts=run_charts(ws, t, info),
        members=shown.to_dict("records"),
        member_count=len(members),
        segment=segment,
        page=page,
        pages=pages,
    )


@router.get("/segments/{run}/members.csv")
def segment_members_csv(request: Request, run: str) -> Response:
    try:
        _session(request)
    except _SignIn:
        return _to_sign_in(request)
    ws = get_state(request).readers.get()
    try:
        info = ws.segments.get(run)
    except NotFoundError:
        return Response(status_code=404)
    members = ws.segments.members(info.run_id)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in info.run_id)
    return Response(
        members.to_csv(index=False),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="segment-{name}.csv"'},
    )


def _month(value: Any, lang: str) -> str:
    """A cohort month as the language writes it (2025年11月, Nov 2025)."""
    m = pd.Timestamp(str(value))
    return f"{m.year}年{m.month}月" if lang == "zh" else m.strftime("%b %Y")


__all__ = ["router"]
