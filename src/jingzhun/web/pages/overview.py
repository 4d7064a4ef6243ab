"""The overview: key figures over a period against the one before, daily trends, the funnel,
cohort retention and the health of ingest."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from jingzhun.api.deps import get_state
from jingzhun.ingest import read as ingest_read
from jingzhun.report.html import figure
from jingzhun.report.i18n import Translator
from jingzhun.web.common import lang_of, number, render, signed_in

router = APIRouter(include_in_schema=False)
#: Periods the overview offers, in days.
PERIODS = (7, 30, 90)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, days: str | None = None) -> Response:
    session = signed_in(request)
    n = number(days, 30)
    span = n if n in PERIODS else 30
    ws = get_state(request).readers.get()
    t = Translator(lang_of(request))
    health = ingest_read.health(ws.store)
    if not health["events_to"]:
        return render(request, "overview.html", session, empty=True, days=span, periods=PERIODS)
    activity = ws.profiles.overview(span)
    before, now = (
        _period(activity.daily.iloc[:span], span),
        _period(activity.daily.iloc[span:], span),
    )
    kpis = [
        _kpi(t("users"), health["tables"]["users"], None, "int"),
        _kpi(t("avg_daily_active"), now["active"], before["active"], "float"),
        _kpi(t("orders"), now["orders"], before["orders"], "int"),
        _kpi(t("revenue"), now["revenue"], before["revenue"], "money"),
        _kpi(t("aov"), now["aov"], before["aov"], "money"),
        _kpi(t("daily_conversion"), now["conversion"], before["conversion"], "pct"),
    ]
    charts = [
        _trend_chart(activity.daily.iloc[span:], t),
        _funnel_chart(activity.funnel, t),
        _cohort_chart(activity.cohorts, t),
    ]
    return render(
        request,
        "overview.html",
        session,
        empty=False,
        days=span,
        periods=PERIODS,
        kpis=kpis,
        charts=[c for c in charts if c],
        as_of=activity.as_of,
        quarantine=health["quarantine_open"],
        quarantine_reasons=ws.ingest.quarantine.reasons().head(5).to_dict("records"),
        tables=health["tables"],
    )


def _period(daily: pd.DataFrame, days: int) -> dict[str, Any]:
    """The overview's figures for one period's ``days`` days."""
    orders, revenue = float(daily["orders"].sum()), float(daily["revenue"].sum())
    actives = float(daily["actives"].sum())
    return {
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


def _funnel_chart(steps: pd.DataFrame, t: Translator) -> str | None:
    import plotly.graph_objects as go

    if steps.empty:
        return None
    labels = [t(s) for s in steps["step"]]
    fig = go.Figure(
        go.Funnel(y=labels, x=steps["visitors"], texttemplate="%{value:,}<br>%{percentInitial:.0%}")
    )
    fig.update_layout(title=t("web_funnel"), yaxis_title=t("funnel_step"))
    return figure(fig, height=320)


def _cohort_chart(retention: pd.DataFrame, t: Translator) -> str | None:
    import plotly.graph_objects as go

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


def _month(value: Any, lang: str) -> str:
    """A cohort month as the language writes it (2025年11月, Nov 2025)."""
    m = pd.Timestamp(str(value))
    return f"{m.year}年{m.month}月" if lang == "zh" else m.strftime("%b %Y")


__all__ = ["router"]
