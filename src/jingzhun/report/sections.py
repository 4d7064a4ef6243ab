"""The collect stage's report sections: overview, activity, ingest, data quality, identity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from jingzhun.ingest import read as ingest_read
from jingzhun.ingest.clean import clean
from jingzhun.report.html import cards, figure, heading, note, table
from jingzhun.report.i18n import Translator
from jingzhun.report.registry import Section, section

if TYPE_CHECKING:
    from jingzhun.workspace import Workspace


def _has_events(ws: Workspace) -> bool:
    return ws.store.count("events") > 0


@section(10)
def overview(ws: Workspace, t: Translator) -> Section | None:
    import plotly.graph_objects as go

    s = ingest_read.summary(ws.store)
    tables = s["tables"]
    totals = ingest_read.order_totals(ws.store)
    period = f"{s['events_from'][:10]} – {s['events_to'][:10]}" if s["events_from"] else "–"
    body = cards(
        [
            (t("events"), tables["events"]),
            (t("users"), tables["users"]),
            (t("items"), tables["items"]),
            (t("orders"), totals.orders),
            *(
                [
                    (t("net_revenue"), round(totals.net, 2)),
                    (t("refunded"), round(totals.refunded, 2)),
                ]
                if totals.refunded
                else [(t("revenue"), round(totals.revenue, 2))]
            ),
            (t("period"), period),
            (t("identities"), tables["identities"]),
            (t("quarantine_open"), s["quarantine_open"]),
        ]
    )
    if s["events_by_type"]:
        by = pd.Series(s["events_by_type"]).sort_values()
        fig = go.Figure(go.Bar(x=by.values, y=by.index, orientation="h"))
        fig.update_layout(title=t("events_by_type"))
        body += figure(fig, height=max(260, 26 * len(by)))
    return Section("overview", t("overview"), body)


@section(20)
def activity(ws: Workspace, t: Translator) -> Section | None:
    if not _has_events(ws):
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    daily = ingest_read.daily_events(ws.store)
    wide = daily.pivot_table(index="day", columns="event", values="n", fill_value=0)
    fig = go.Figure(
        [go.Scatter(x=wide.index, y=wide[c], name=c, mode="lines") for c in wide.columns]
    )
    fig.update_layout(title=t("daily_events"), xaxis_title=t("day"), yaxis_title=t("count"))
    body = figure(fig)
    sales = ingest_read.daily_sales(ws.store)
    if not sales.empty:
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(
            go.Bar(x=sales["day"], y=sales["orders"], name=t("orders"), opacity=0.6),
            secondary_y=False,
        )
        fig.add_trace(
            go.Scatter(x=sales["day"], y=sales["revenue"], name=t("revenue"), mode="lines"),
            secondary_y=True,
        )
        if sales["refunded"].any():
            # What each day gave back, on the revenue scale: a dashed line under the sales.
            fig.add_trace(
                go.Scatter(
                    x=sales["day"],
                    y=sales["refunded"],
                    name=t("refunded"),
                    mode="lines",
                    line={"color": "#7b2cbf", "dash": "dot"},
                ),
                secondary_y=True,
            )
        fig.update_layout(title=t("daily_revenue"))
        body += figure(fig)
    channels = ingest_read.channel_mix(ws.store)
    if not channels.empty:
        fig = go.Figure(go.Pie(labels=channels["channel"], values=channels["n"], hole=0.45))
        fig.update_layout(title=t("channel_mix"))
        body += figure(fig, height=320)
    return Section("activity", t("activity"), body)


@section(30)
def ingest(ws: Workspace, t: Translator) -> Section | None:
    import plotly.graph_objects as go

    batches = ingest_read.recent_batches(ws.store, limit=30)
    if batches.empty:
        return None
    body = heading(t("batches")) + table(
        batches,
        columns={
            "batch_id": t("batch"),
            "kind": t("kind"),
            "sources": t("sources"),
            "rows_read": t("rows_read"),
            "inserted": t("inserted"),
            "duplicates": t("duplicates"),
            "quarantined": t("quarantined"),
            **({"skipped": t("skipped")} if batches["skipped"].any() else {}),
            **(
                {"previously_removed": t("previously_removed")}
                if batches["previously_removed"].any()
                else {}
            ),
            "seconds": t("seconds"),
        },
    )
    custom = ingest_read.custom_events(ws.store)
    if not custom.empty:
        body += heading(t("custom_events")) + table(
            custom, columns={"event": t("event"), "n": t("rows")}
        )
    reasons = ws.quarantine_reasons()
    body += heading(t("quarantine_reasons"))
    if reasons.empty:
        body += note(t("no_quarantine"))
    else:
        top = reasons.head(12).iloc[::-1]
        fig = go.Figure(
            go.Bar(
                x=top["rows"],
                y=[f"{k}: {r[:70]}" for k, r in zip(top["kind"], top["reason"], strict=True)],
                orientation="h",
            )
        )
        body += figure(fig, height=max(240, 30 * len(top)))
    return Section("ingest", t("ingest"), body)


@section(40)
def quality(ws: Workspace, t: Translator) -> Section | None:
    if not _has_events(ws):
        return None
    import plotly.graph_objects as go

    rep = clean(ws.store, ws.settings.clean, flag=False)
    out = rep.outliers
    body = cards(
        [
            (t("outliers"), out.get("outliers", 0)),
            (t("bursts"), rep.bursts.get("actors", 0)),
            (t("content_duplicates"), rep.duplicates.get("content_duplicates", 0)),
            (t("flagged"), int(ws.store.count("event_flags"))),
        ]
    )
    values = ingest_read.order_values(ws.store)
    if len(values):
        fig = go.Figure(go.Histogram(x=np.log10(1 + values), nbinsx=80))
        for side, fence in (out.get("fences") or {}).items():
            if fence is not None and fence > 0:
                fig.add_vline(
                    x=float(np.log10(1 + fence)),
                    line_dash="dash",
                    line_color="#e4572e",
                    annotation_text=f"{side} {fence:,.0f}",
                )
        fig.update_layout(
            title=t("order_values"),
            xaxis_title=f"log10(1 + {t('order_value')})",
            yaxis_title=t("orders"),
        )
        body += figure(fig, height=320)
    if out.get("examples"):
        body += heading(t("outliers")) + table(pd.DataFrame(out["examples"]))
    body += heading(t("bursts"))
    if rep.bursts.get("top"):
        body += table(
            pd.DataFrame(rep.bursts["top"]),
            columns={
                "actor": t("visitor"),
                "minutes": t("minutes"),
                "events": t("events"),
                "peak_per_minute": t("peak"),
            },
        )
    else:
        body += note(t("no_bursts"))
    missing = pd.DataFrame(rep.missing)
    missing = missing[missing["rate"] > 0].sort_values("rate")
    if not missing.empty:
        fig = go.Figure(
            go.Bar(x=missing["rate"], y=missing["table"] + "." + missing["column"], orientation="h")
        )
        fig.update_layout(title=t("missing_rates"), xaxis_tickformat=".0%")
        body += figure(fig, height=max(260, 22 * len(missing)))
    dup = rep.duplicates.get("ingest", {})
    if dup:
        frame = pd.DataFrame([{"kind": k, **v} for k, v in dup.items()])
        body += heading(t("duplicate_rates")) + table(
            frame,
            columns={
                "kind": t("kind"),
                "rows_read": t("rows_read"),
                "duplicates": t("duplicates"),
                "rate": t("duplicate_rates"),
            },
        )
    return Section("quality", t("quality"), body)


@section(50)
def identity(ws: Workspace, t: Translator) -> Section | None:
    if not _has_events(ws):
        return None
    import plotly.graph_objects as go

    s = ingest_read.summary(ws.store)
    total = s["tables"]["events"]
    anon = s["anonymous_events"]
    stitched = s["anonymous_events_stitched"]
    labels = [t("known"), t("stitched"), t("anonymous")]
    values = [total - anon, stitched, anon - stitched]
    fig = go.Figure(go.Pie(labels=labels, values=values, hole=0.45, sort=False))
    fig.update_layout(title=t("identity_mix"))
    body = cards(
        [
            (t("identities"), s["tables"]["identities"]),
            (t("users"), s["known_users_with_anonymous_history"]),
        ]
    ) + figure(fig, height=320)
    return Section("identity", t("identity"), body)
