"""The profile stage's report sections: profiles and tags, and behaviour analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jingzhun.errors import NotFoundError
from jingzhun.profile import analyze as an
from jingzhun.profile import read as profile_read
from jingzhun.profile.tags import RFM_SEGMENTS
from jingzhun.report.html import cards, figure, heading, note, table
from jingzhun.report.i18n import Translator, register
from jingzhun.report.registry import Section, section

if TYPE_CHECKING:
    from jingzhun.workspace import Workspace

register(
    {
        "profiles": ("Profiles and tags", "用户画像与标签"),
        "active_visitors": (
            "Active visitors per day (and 7-day average)",
            "日活跃访客（及 7 日均值）",
        ),
        "profiled": ("Users profiled", "画像用户数"),
        "as_of": ("As of", "截至"),
        "customers": ("Customers", "下单用户"),
        "repeat_customers": ("Repeat customers", "复购用户"),
        "median_recency": ("Median recency (days)", "最近购买间隔中位数（天）"),
        "mean_aov": ("Mean order value", "平均客单价"),
        "rfm_segments": ("RFM segments", "RFM 分群"),
        "recency": ("Days since the last order", "距上次下单天数"),
        "frequency_orders": ("Orders per customer", "每位用户订单数"),
        "monetary_log": ("Customer spend (log scale)", "用户消费额（对数坐标）"),
        "affinity_mix": ("Category affinity, averaged over users", "品类偏好（用户平均）"),
        "score_dist": ("Profile score P(u)", "画像综合分 P(u)"),
        "tags_table": ("Tags", "标签"),
        "tag": ("Tag", "标签"),
        "value": ("Value", "取值"),
        "users_n": ("Users", "用户数"),
        "behaviour": ("Behaviour analysis", "行为分析"),
        "trend_cards": ("Trend over the last complete weeks", "近几周趋势"),
        "per_week": ("per week", "每周"),
        "wow": ("week over week", "周环比"),
        "funnel": ("Funnel", "转化漏斗"),
        "cohorts": ("Monthly cohorts: share ordering again", "月度同期群复购率"),
        "months_since": ("Months since the first order", "首单后月数"),
        "cohort": ("Cohort", "同期群"),
        "baskets": ("Bought together (category rules)", "关联购买（品类规则）"),
        "item_rules": ("Item rules found", "商品级关联规则数"),
        "antecedent": ("If bought", "购买了"),
        "consequent": ("Then also", "则也购买"),
        "support": ("Support", "支持度"),
        "confidence": ("Confidence", "置信度"),
        "lift": ("Lift", "提升度"),
        "interpurchase": ("Days between a customer's orders", "复购间隔（天）"),
        "repeat_rate": ("Repeat rate", "复购率"),
        "no_profiles": (
            "No profiles yet: run jingzhun profile build.",
            "尚未构建画像：请运行 jingzhun profile build。",
        ),
    }
)


@section(60)
def profiles(ws: Workspace, t: Translator) -> Section | None:
    if not profile_read.has_profiles(ws.store):
        return None
    import plotly.graph_objects as go

    s = profile_read.overview(ws.store)
    body = cards(
        [
            (t("profiled"), s.users),
            (t("as_of"), s.as_of.strftime("%Y-%m-%d %H:%M") if s.as_of else "–"),
            (t("customers"), s.customers),
            (t("repeat_customers"), s.repeat_customers),
            (t("median_recency"), s.median_recency_days),
            (t("mean_aov"), None if s.mean_aov is None else round(s.mean_aov, 2)),
        ]
    )
    seg = profile_read.rfm_segment_counts(ws.store)
    if not seg.empty:
        order = [name for name in RFM_SEGMENTS if name in set(seg["segment"])]
        seg = seg.set_index("segment").loc[order].reset_index()
        fig = go.Figure(go.Bar(x=seg["segment"], y=seg["users"]))
        fig.update_layout(title=t("rfm_segments"))
        body += figure(fig, height=340)
    cust = profile_read.customers(ws.store)
    if not cust.empty:
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=1, cols=3, subplot_titles=(t("recency"), t("frequency_orders"), t("monetary_log"))
        )
        fig.add_trace(
            go.Histogram(x=cust["recency_days"], nbinsx=50, showlegend=False), row=1, col=1
        )
        fig.add_trace(
            go.Histogram(x=cust["frequency"].clip(upper=20), nbinsx=20, showlegend=False),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Histogram(
                x=np.log10(1 + cust["monetary"].to_numpy(dtype=float)), nbinsx=50, showlegend=False
            ),
            row=1,
            col=3,
        )
        body += figure(fig, height=320)
    aff = profile_read.affinity_shares(ws.store)
    if not aff.empty:
        fig = go.Figure(go.Bar(x=aff["share"], y=aff["category"], orientation="h"))
        fig.update_layout(title=t("affinity_mix"), xaxis_tickformat=".0%")
        body += figure(fig, height=max(260, 24 * len(aff)))
    fig = go.Figure(go.Histogram(x=profile_read.profile_scores(ws.store), nbinsx=50))
    fig.update_layout(title=t("score_dist"))
    body += figure(fig, height=280)
    tags = profile_read.tag_counts(ws.store)
    tags = tags[(tags["source"] != "rfm") | (tags["tag"] == "rfm_segment")]  # scores: see the chart
    if not tags.empty:
        body += heading(t("tags_table")) + table(
            tags, columns={"tag": t("tag"), "value": t("value"), "users": t("users_n")}, max_rows=60
        )
    return Section("profiles", t("profiles"), body)


@section(70)
def behaviour(ws: Workspace, t: Translator) -> Section | None:
    if not ws.store.count("events"):
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    body = ""
    tr = an.trends(ws.store)
    d = tr.tables["daily"]
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        subplot_titles=(t("active_visitors"), t("orders"), t("revenue")),
        vertical_spacing=0.06,
    )
    for row, metric in enumerate(("actives", "orders", "revenue"), start=1):
        fig.add_trace(
            go.Scatter(
                x=d["day"],
                y=d[metric],
                mode="lines",
                line={"width": 1},
                opacity=0.45,
                name=metric,
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=d["day"],
                y=d[f"{metric}_7d"],
                mode="lines",
                name=f"{metric} (7d)",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    body += figure(fig, height=520)
    trend_cards = []
    for metric in ("actives", "orders", "revenue"):
        info = tr.summary.get(metric, {})
        if info.get("trend_per_week") is not None:
            wow = info.get("week_over_week")
            trend_cards.append(
                (
                    f"{metric}: {t('per_week')} / {t('wow')}",
                    f"{info['trend_per_week']:+.1%} / {'–' if wow is None else f'{wow:+.1%}'}",
                )
            )
    if trend_cards:
        body += heading(t("trend_cards")) + cards(trend_cards)
    try:
        fu = an.funnel(ws.store).tables["steps"]
        fig = go.Figure(go.Funnel(y=fu["step"], x=fu["visitors"], textinfo="value+percent initial"))
        fig.update_layout(title=t("funnel"))
        body += figure(fig, height=320)
    except NotFoundError:
        pass
    try:
        co = an.cohorts(ws.store).tables["retention"]
        months = [c for c in co.columns if c.startswith("m") and c != "m0"]
        z = co[months].to_numpy(dtype=float, copy=True)
        z[z == 0] = np.nan  # months not reached yet
        text = np.where(
            np.isnan(z),
            "",
            np.char.add(np.round(np.nan_to_num(z) * 100).astype(int).astype(str), "%"),
        )
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=[c[1:] for c in months],
                y=co["cohort"],
                colorscale="Blues",
                zmin=0,
                text=text,
                texttemplate="%{text}",
            )
        )
        fig.update_layout(
            title=t("cohorts"), xaxis_title=t("months_since"), yaxis_title=t("cohort")
        )
        body += figure(fig, height=420)
    except NotFoundError:
        pass
    try:
        ba = an.baskets(ws.store, level="category")
        items = an.baskets(ws.store, level="item")
        body += heading(t("baskets"))
        rules = ba.tables["rules"]
        if rules.empty:
            body += note("–")
        else:
            body += table(
                rules,
                columns={
                    "antecedent": t("antecedent"),
                    "consequent": t("consequent"),
                    "support": t("support"),
                    "confidence": t("confidence"),
                    "lift": t("lift"),
                },
                max_rows=20,
            )
        body += cards([(t("item_rules"), int(items.summary["rules"]))])
    except NotFoundError:
        pass
    try:
        fr = an.frequency(ws.store)
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=(t("frequency_orders"), t("interpurchase"))
        )
        opc = fr.tables["orders_per_customer"]
        fig.add_trace(go.Bar(x=opc["orders"], y=opc["customers"], showlegend=False), row=1, col=1)
        if "interpurchase_days" in fr.tables:
            ip = fr.tables["interpurchase_days"]
            labels = [f"{a:g}–{b:g}" for a, b in zip(ip["from_days"], ip["to_days"], strict=True)]
            fig.add_trace(go.Bar(x=labels, y=ip["gaps"], showlegend=False), row=1, col=2)
        body += figure(fig, height=320)
        body += cards(
            [(t("repeat_rate"), f"{fr.summary['repeat_rate']:.1%}")]
            + [
                (f"{k} ({t('interpurchase')})", v)
                for k, v in fr.summary.get("interpurchase_days", {}).items()
                if k in ("p25", "p50", "p75")
            ]
        )
    except NotFoundError:
        pass
    return Section("behaviour", t("behaviour"), body) if body else None


__all__ = ["behaviour", "profiles"]
