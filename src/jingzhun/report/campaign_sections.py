"""The campaign stage's report section: what each sent campaign did and what it caused.

For every campaign past its draft (sending or sent), newest first: the members and the funnel,
the rates, the incremental conversions, revenue, profit and ROI; the lift over the control
group with its interval, plain and CUPED, for the conversion rate and the revenue per member;
the lift as the conversion window fills; the variants with Holm-adjusted p-values. A
sample-ratio mismatch is a warning line, an unfinished conversion window a note.

The numbers are those of ``ws.evaluate.campaign(name)`` (``jingzhun campaign report``), read
through the Workspace so the report layer imports neither the campaign nor the evaluate stage.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.read import latest_event_time
from jingzhun.report.html import PALETTE, cards, figure, fmt, heading, note, table
from jingzhun.report.i18n import Translator, register
from jingzhun.report.registry import Section, section

if TYPE_CHECKING:
    from jingzhun.evaluate.campaign import CampaignReport
    from jingzhun.workspace import Workspace

register(
    {
        "campaigns": ("Campaigns", "营销活动"),
        "camp_line": (
            "{name}: {channel}, {state}, audience drawn {snapshot}",
            "{name}：{channel}，{state}，人群抽取于 {snapshot}",
        ),
        "camp_state_sent": ("sent", "已发送"),
        "camp_channel_email": ("email", "邮件"),
        "camp_channel_webhook": ("webhook", "Webhook 推送"),
        "camp_channel_ads": ("ads", "广告人群"),
        "camp_state_sending": ("still sending", "发送中"),
        "camp_no_report": ("No evaluation: {reason}", "无法评估：{reason}"),
        "camp_more": (
            "{n} older campaigns are not shown: jingzhun campaign report NAME shows any of them.",
            "另有 {n} 个较早的活动未展示：用 jingzhun campaign report 名称 查看。",
        ),
        # cards
        "camp_arms": ("Treatment / control", "实验组 / 对照组"),
        "camp_conv_lift": ("Conversion lift (p = {p})", "转化率提升（p = {p}）"),
        "camp_inc_profit": ("Incremental profit", "增量利润"),
        "camp_roi": ("ROI (profit / cost)", "投资回报率（利润 / 成本）"),
        # warnings and notes
        "camp_srm": (
            "Sample ratio mismatch: {t:,} treatment and {c:,} control members where {et:,.0f} "
            "and {ec:,.0f} were expected (chi-square p = {p:.2g}). The draw or the logging lost "
            "members on one side; do not trust the lift until that is explained.",
            "样本比例失衡：实验组 {t:,} 人、对照组 {c:,} 人，预期为 {et:,.0f} 和 {ec:,.0f}"
            "（卡方检验 p = {p:.2g}）。抽样或记录在某一侧丢失了成员；查明原因前不要相信提升结果。",
        ),
        "camp_window_open": (
            "The {days:g}-day conversion window after the send has not ended: conversions are "
            "still coming in, and these numbers will change.",
            "发送后 {days:g} 天的转化窗口尚未结束：转化仍在发生，以下数字还会变化。",
        ),
        "camp_itt": (
            "Intent-to-treat: every treatment member, messaged or not, against every control "
            "member, over the {days:g} days after the send. CUPED adjusts each member's outcome "
            "by the same measure before the send (theta = {tc:.3g} for conversion, {tr:.3g} "
            "for revenue).",
            "意向处理分析：全部实验组成员（无论是否成功触达）对比全部对照组成员，观察发送后 {days:g} "
            "天。CUPED 用每位成员发送前的同一指标校正结果（转化 theta = {tc:.3g}，收入 theta = "
            "{tr:.3g}）。",
        ),
        # tables
        "camp_members_funnel": ("Members and funnel", "成员与漏斗"),
        "camp_rates": ("Rates", "比率"),
        "camp_caused": ("What the campaign caused", "活动带来的增量"),
        "camp_effect": ("Lift over the control group", "相对对照组的提升"),
        "camp_measure": ("Measure", "指标"),
        "camp_value": ("Value", "数值"),
        "camp_estimate": ("Estimate", "估计值"),
        "camp_low": ("{conf} low", "{conf} 下限"),
        "camp_high": ("{conf} high", "{conf} 上限"),
        "camp_treatment_n": ("Treatment members", "实验组人数"),
        "camp_control_n": ("Control members", "对照组人数"),
        "camp_sent": ("Sent", "已发送"),
        "camp_bounced": ("Bounced", "退信"),
        "camp_failed": ("Failed", "发送失败"),
        "camp_opened": ("Opened", "已打开"),
        "camp_clicked": ("Clicked", "已点击"),
        "camp_unsubscribed": ("Unsubscribed", "已退订"),
        "camp_converted": ("Converted (treatment)", "已转化（实验组）"),
        "camp_revenue": ("Revenue (treatment, in window)", "销售额（实验组，窗口内）"),
        "camp_cost": ("Cost of sending", "发送成本"),
        "camp_open_rate": ("Open rate (of sent)", "打开率（占已发送）"),
        "camp_ctr": ("Click-through rate (of sent)", "点击率（占已发送）"),
        "camp_cto": ("Click-to-open rate", "打开后点击率"),
        "camp_unsub_rate": ("Unsubscribe rate", "退订率"),
        "camp_conv_t": ("Conversion rate, treatment", "转化率（实验组）"),
        "camp_conv_c": ("Conversion rate, control", "转化率（对照组）"),
        "camp_inc_conv": ("Incremental conversions", "增量转化人数"),
        "camp_inc_rev": ("Incremental revenue", "增量销售额"),
        "camp_profit_line": (
            "Incremental profit (margin {m:.0%}, less cost)",
            "增量利润（毛利率 {m:.0%}，扣除成本）",
        ),
        "camp_outcome": ("Outcome", "结果指标"),
        "camp_treated": ("Treatment", "实验组"),
        "camp_control": ("Control", "对照组"),
        "camp_lift": ("Lift", "提升"),
        "camp_p": ("p-value", "p 值"),
        "camp_conv_plain": ("Conversion rate", "转化率"),
        "camp_conv_cuped": ("Conversion rate, CUPED", "转化率（CUPED）"),
        "camp_rev_plain": ("Revenue per member", "人均销售额"),
        "camp_rev_cuped": ("Revenue per member, CUPED", "人均销售额（CUPED）"),
        # variants
        "camp_variants": ("Variants against the control group", "各版本对比对照组"),
        "camp_variant": ("Variant", "版本"),
        "camp_members": ("Members", "人数"),
        "camp_p_holm": ("p-value, Holm", "p 值（Holm 校正）"),
        "camp_significant": ("Significant", "显著"),
        "camp_holm_note": (
            "Each variant's treatment members against the whole control group; the {k} "
            "p-values are adjusted for multiple comparisons by Holm's method (significant: "
            "adjusted p below {alpha:g}).",
            "每个版本的实验组成员对比全部对照组；{k} 个 p 值按 Holm 方法做多重比较校正"
            "（显著：校正后 p 小于 {alpha:g}）。",
        ),
        # charts
        "camp_conv_chart": (
            "Lift in conversion rate, {conf} interval",
            "转化率提升（{conf} 区间）",
        ),
        "camp_rev_chart": (
            "Lift in revenue per member, {conf} interval",
            "人均销售额提升（{conf} 区间）",
        ),
        "camp_plain": ("Plain", "未校正"),
        "camp_cuped": ("CUPED", "CUPED"),
        "camp_axis_pp": ("Lift in conversion rate (percentage points)", "转化率提升（百分点）"),
        "camp_axis_rev": (
            "Lift in revenue per member (currency units)",
            "人均销售额提升（货币单位）",
        ),
        "camp_estimator": ("Estimator", "估计方法"),
        "camp_over_time": (
            "Conversion lift as the window fills, {conf} interval",
            "转化率提升随窗口累积的变化（{conf} 区间）",
        ),
        "camp_days_after": ("Days after the send", "发送后天数"),
        "camp_interval": ("{conf} interval", "{conf} 区间"),
        "camp_today": ("today", "今天"),
        "camp_funnel": ("Funnel of the treatment arm", "实验组漏斗"),
        "camp_step": ("Step", "环节"),
        "camp_members_axis": ("Members (treatment arm)", "人数（实验组）"),
        "camp_converted_step": ("Converted", "已转化"),
    }
)

#: Campaigns shown, newest first; older ones are named in a note (each costs a query).
MAX_CAMPAIGNS = 10
#: Warnings stand out from the muted notes (the report's stylesheet has no warning class).
WARNING_STYLE = "color:#b42318;font-weight:600"
SUBHEADING_STYLE = "font-size:13px;margin:16px 0 6px;color:#475467"
#: The tables sit side by side on a wide page and wrap on a narrow one; the table of what
#: the campaign caused has four columns, so it gets the widest share.
TABLES_STYLE = "display:flex;flex-wrap:wrap;gap:8px 24px"
TABLE_STYLE = {"narrow": "flex:1 1 260px", "wide": "flex:1.6 1 420px"}
CAMPAIGN_STYLE = "border-top:1px solid #e4e7ec;margin-top:20px;padding-top:4px"
PLAIN_COLOR, CUPED_COLOR = PALETTE[0], PALETTE[2]
#: The level the variants' Holm correction rejects at (evaluate's ``holm`` default).
HOLM_ALPHA = 0.05


@section(110)
def campaigns(ws: Workspace, t: Translator) -> Section | None:
    """Every campaign past its draft, newest first (None when there is none)."""
    listed = ws.campaigns.list()
    shown = listed[listed["state"] != "draft"]
    if shown.empty:
        return None
    names = shown["name"].astype(str).tolist()
    clock = _clock(ws)
    body = "".join(campaign_report(ws, t, name, clock) for name in names[:MAX_CAMPAIGNS])
    if len(names) > MAX_CAMPAIGNS:
        body += note(t("camp_more").format(n=len(names) - MAX_CAMPAIGNS))
    return Section("campaigns", t("campaigns"), body)


def _clock(ws: Workspace) -> datetime:
    """How far the data reach: the wall clock, or the newest event when the data run ahead of
    it (a simulated or replayed store), as the evaluation decides whether a window is over."""
    now = datetime.now(UTC).replace(tzinfo=None)
    latest = latest_event_time(ws.store)
    return now if latest is None else max(now, latest)


def campaign_report(ws: Workspace, t: Translator, name: str, clock: datetime | None = None) -> str:
    """One sent campaign's report as an HTML fragment — the block the report's campaigns
    section shows for it and the dashboard's campaign page shows alone, so both say the same
    from one definition: cards (arms, conversion lift, incremental profit, ROI), the
    sample-ratio warning, the funnel, rates and incremental tables, the lift over the control
    group with its intervals (plain and CUPED), the lift charts, the lift as the window fills,
    the funnel chart, and the variants with Holm-adjusted p-values. Each chart sits in a
    ``<div class="card">``.

    ``clock`` says how far the data reach (default: the wall clock, or the newest event when
    the data run ahead of it). A campaign that cannot be evaluated (an empty arm) gets a note
    saying why.

    Raises
    ------
    NotFoundError
        No such campaign.
    InputError
        It was never sent (a draft has nothing to report).
    """
    if clock is None:
        clock = _clock(ws)
    try:
        r = ws.evaluate.campaign(name)
    except NotFoundError:
        raise
    except InputError as err:  # an arm is empty (a tiny audience): nothing to compare
        if ws.campaigns.get(name).snapshot_at is None:
            raise  # never sent: nothing to report, for the caller to say so
        inner = heading(name) + note(t("camp_no_report").format(reason=err))
    else:
        inner = _report(t, r, clock)
    return (
        f'<div class="campaign" id="campaign-{html.escape(name)}" '
        f'data-campaign="{html.escape(name)}" style="{CAMPAIGN_STYLE}">{inner}</div>'
    )


def _report(t: Translator, r: CampaignReport, clock: datetime) -> str:
    """The evaluated campaign: cards, warnings, tables, charts, variants."""
    conf = _conf(r)
    snapshot = fmt(pd.Timestamp(r.snapshot_at)) if r.snapshot_at is not None else "–"
    body = heading(
        t("camp_line").format(
            name=r.campaign,
            channel=t(f"camp_channel_{r.channel}"),
            state=t(f"camp_state_{r.state}"),
            snapshot=snapshot,
        )
    )
    body += _cards(t, r)
    if r.sample_ratio.get("mismatch"):
        body += _srm_warning(t, r)
    if not r.window_complete:
        body += note(t("camp_window_open").format(days=r.window_days))
    body += note(
        t("camp_itt").format(
            days=r.window_days,
            tc=r.conversion_cuped.get("theta") or 0.0,
            tr=r.revenue_cuped.get("theta") or 0.0,
        )
    )
    body += f'<div style="{TABLES_STYLE}">'
    body += _part("funnel", t("camp_members_funnel"), _funnel_table(t, r), "narrow")
    body += _part("rates", t("camp_rates"), _rates_table(t, r), "narrow")
    body += _part("incremental", t("camp_caused"), _incremental_table(t, r, conf), "wide")
    body += "</div>"
    body += _part("effect", t("camp_effect"), _effect_table(t, r, conf))
    body += '<div class="grid2">' + _lift_charts(t, r, conf)
    body += _over_time_chart(t, r, conf, clock) + _funnel_chart(t, r) + "</div>"
    if len(r.variants) > 1:
        body += _part("variants", t("camp_variants"), _variants_table(t, r, conf))
        body += note(t("camp_holm_note").format(k=len(r.variants), alpha=HOLM_ALPHA))
    return body


# -- formatting ---------------------------------------------------------------------------------


def _conf(r: CampaignReport) -> str:
    return f"{r.conversion.get('confidence', 0.95):.0%}"


def _pct(x: float | None) -> str:
    """A rate as a percentage with two decimals (``0.385468`` → ``38.55%``)."""
    return "–" if x is None else f"{x:.2%}"


def _pp(x: float | None) -> str:
    """A difference of rates in signed percentage points (``0.0464`` → ``+4.64 pp``)."""
    return "–" if x is None else f"{100 * x:+.2f} pp"


def _money(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+,.2f}"


def _part(key: str, title: str, inner: str, width: str | None = None) -> str:
    """A titled block the tests find by ``data-part`` (``width``: its share of a row)."""
    style = f' style="{TABLE_STYLE[width]}"' if width else ""
    return (
        f'<div data-part="{key}"{style}><h4 style="{SUBHEADING_STYLE}">{html.escape(title)}</h4>'
        f"{inner}</div>"
    )


def _measures(t: Translator, rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table: what is measured, and its value (already formatted)."""
    frame = pd.DataFrame(rows, columns=[t("camp_measure"), t("camp_value")])
    return table(frame, numeric=[t("camp_value")])


def _srm_warning(t: Translator, r: CampaignReport) -> str:
    s = r.sample_ratio
    (ot, oc), (et, ec) = s["observed"], s["expected"]
    text = t("camp_srm").format(t=int(ot), c=int(oc), et=et, ec=ec, p=s["p_value"])
    return f'<p class="note warning" style="{WARNING_STYLE}">⚠ {html.escape(text)}</p>'


# -- cards and tables ---------------------------------------------------------------------------


def _cards(t: Translator, r: CampaignReport) -> str:
    c, inc = r.conversion, r.incremental
    roi = inc.get("roi")
    return cards(
        [
            (t("camp_arms"), f"{r.funnel['treatment']:,} / {r.funnel['control']:,}"),
            (t("camp_conv_lift").format(p=fmt(c["p_value"])), _pp(c["lift"])),
            (t("camp_inc_profit"), _signed(inc["profit"])),
            (t("camp_roi"), "–" if roi is None else f"{roi:,.2f}"),
        ]
    )


def _funnel_table(t: Translator, r: CampaignReport) -> str:
    f = r.funnel
    rows = [
        (t("camp_treatment_n"), fmt(f["treatment"])),
        (t("camp_control_n"), fmt(f["control"])),
        (t("camp_sent"), fmt(f["sent"])),
        # Only when something went wrong: a clean send has no bounce or failure rows.
        *[(t(f"camp_{k}"), fmt(f[k])) for k in ("bounced", "failed") if f.get(k)],
        (t("camp_opened"), fmt(f["opened"])),
        (t("camp_clicked"), fmt(f["clicked"])),
        *([(t("camp_unsubscribed"), fmt(f["unsubscribed"]))] if f.get("unsubscribed") else []),
        (t("camp_converted"), fmt(f["converted"])),
        (t("camp_revenue"), _money(f["revenue"])),
        (t("camp_cost"), _money(f["cost"])),
    ]
    return _measures(t, rows)


def _rates_table(t: Translator, r: CampaignReport) -> str:
    s = r.rates
    rows = [
        (t("camp_open_rate"), _pct(s["open_rate"])),
        (t("camp_ctr"), _pct(s["click_through_rate"])),
        (t("camp_cto"), _pct(s["click_to_open_rate"])),
        *(
            [(t("camp_unsub_rate"), _pct(s["unsubscribe_rate"]))]
            if s.get("unsubscribe_rate")
            else []
        ),
        (t("camp_conv_t"), _pct(s["conversion_rate_treatment"])),
        (t("camp_conv_c"), _pct(s["conversion_rate_control"])),
    ]
    return _measures(t, rows)


def _incremental_table(t: Translator, r: CampaignReport, conf: str) -> str:
    i = r.incremental
    roi_low = roi_high = None
    if i.get("roi") is not None:  # cost is fixed, so the profit interval divides through
        roi_low, roi_high = i["profit_low"] / i["cost"], i["profit_high"] / i["cost"]
    rows = [
        (
            t("camp_inc_conv"),
            _signed(i["conversions"]),
            _signed(i["conversions_low"]),
            _signed(i["conversions_high"]),
        ),
        (
            t("camp_inc_rev"),
            _signed(i["revenue"]),
            _signed(i["revenue_low"]),
            _signed(i["revenue_high"]),
        ),
        (
            t("camp_profit_line").format(m=i["margin"]),
            _signed(i["profit"]),
            _signed(i["profit_low"]),
            _signed(i["profit_high"]),
        ),
        (t("camp_roi"), _roi(i.get("roi")), _roi(roi_low), _roi(roi_high)),
    ]
    cols = [
        t("camp_measure"),
        t("camp_estimate"),
        t("camp_low").format(conf=conf),
        t("camp_high").format(conf=conf),
    ]
    return table(pd.DataFrame(rows, columns=cols), numeric=cols[1:])


def _roi(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f}"


def _effect_table(t: Translator, r: CampaignReport, conf: str) -> str:
    rows = []
    for key, lift, rate in (
        ("camp_conv_plain", r.conversion, True),
        ("camp_conv_cuped", r.conversion_cuped, True),
        ("camp_rev_plain", r.revenue, False),
        ("camp_rev_cuped", r.revenue_cuped, False),
    ):
        level, diff = (_pct, _pp) if rate else (_money, _signed)
        rows.append(
            (
                t(key),
                level(lift["treated"]),
                level(lift["control"]),
                diff(lift["lift"]),
                diff(lift["ci_low"]),
                diff(lift["ci_high"]),
                fmt(lift["p_value"]),
            )
        )
    cols = [
        t("camp_outcome"),
        t("camp_treated"),
        t("camp_control"),
        t("camp_lift"),
        t("camp_low").format(conf=conf),
        t("camp_high").format(conf=conf),
        t("camp_p"),
    ]
    return table(pd.DataFrame(rows, columns=cols), numeric=cols[1:])


def _variants_table(t: Translator, r: CampaignReport, conf: str) -> str:
    rows = [
        (
            v["variant"],
            fmt(int(v["members"])),
            _pct(v["treated"]),
            _pp(v["lift"]),
            _pp(v["ci_low"]),
            _pp(v["ci_high"]),
            fmt(v["p_value"]),
            fmt(v["p_holm"]),
            fmt(bool(v["significant"])),
        )
        for v in r.variants
    ]
    cols = [
        t("camp_variant"),
        t("camp_members"),
        t("camp_conv_t"),
        t("camp_lift"),
        t("camp_low").format(conf=conf),
        t("camp_high").format(conf=conf),
        t("camp_p"),
        t("camp_p_holm"),
        t("camp_significant"),
    ]
    return table(pd.DataFrame(rows, columns=cols), numeric=cols[1:])


# -- charts -------------------------------------------------------------------------------------


def _error_points(
    lifts: Sequence[dict[str, Any]], labels: Sequence[str], colors: Sequence[str], scale: float
) -> list[Any]:
    """One point with its interval per estimator (a missing bound draws no whisker)."""
    import plotly.graph_objects as go

    out = []
    for lift, label, color in zip(lifts, labels, colors, strict=True):
        y = None if lift["lift"] is None else scale * lift["lift"]
        up = None if y is None or lift["ci_high"] is None else scale * lift["ci_high"] - y
        down = None if y is None or lift["ci_low"] is None else y - scale * lift["ci_low"]
        out.append(
            go.Scatter(
                x=[label],
                y=[y],
                mode="markers",
                marker={"size": 11, "color": color},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [up],
                    "arrayminus": [down],
                    "thickness": 2,
                    "width": 8,
                    "color": color,
                },
                name=label,
                showlegend=False,
                hovertemplate=f"{label}: %{{y:+.2f}}<extra></extra>",
            )
        )
    return out


def _lift_charts(t: Translator, r: CampaignReport, conf: str) -> str:
    """Plain and CUPED side by side: the conversion rate (pp), then the revenue per member."""
    import plotly.graph_objects as go

    labels = [t("camp_plain"), t("camp_cuped")]
    colors = [PLAIN_COLOR, CUPED_COLOR]
    out = ""
    for pair, scale, title, axis, suffix in (
        ((r.conversion, r.conversion_cuped), 100.0, "camp_conv_chart", "camp_axis_pp", " pp"),
        ((r.revenue, r.revenue_cuped), 1.0, "camp_rev_chart", "camp_axis_rev", ""),
    ):
        fig = go.Figure(_error_points(pair, labels, colors, scale))
        fig.add_hline(y=0, line_dash="dash", line_color="#98a2b3")
        fig.update_layout(
            title=t(title).format(conf=conf),
            xaxis_title=t("camp_estimator"),
            xaxis_range=[-0.6, 1.6],  # the two points inside the frame, not on its edges
            yaxis_title=t(axis),
            yaxis_ticksuffix=suffix,
            yaxis_rangemode="tozero",  # the zero line is always in view
        )
        out += _chart_card(figure(fig, height=340))
    return out


def _over_time_chart(t: Translator, r: CampaignReport, conf: str, clock: datetime) -> str:
    """The lift counting orders up to each day of the window, with its band. While the window
    is open, only the days fully observed are drawn (a later point would repeat today's as if
    measured) and a line marks today on an axis that spans the whole window."""
    import plotly.graph_objects as go

    days = pd.DataFrame(r.over_time, columns=["day", "lift", "ci_low", "ci_high"])
    elapsed = None
    if not r.window_complete and r.snapshot_at is not None:
        elapsed = (clock - pd.Timestamp(r.snapshot_at).to_pydatetime()).total_seconds() / 86400
        days = days[days["day"] <= max(1.0, elapsed)]  # the days fully observed
    pp = days[["lift", "ci_low", "ci_high"]].astype(float) * 100.0
    band = t("camp_interval").format(conf=conf)
    fig = go.Figure(
        [
            go.Scatter(
                x=days["day"], y=pp["ci_high"], mode="lines", line={"width": 0},
                showlegend=False, hoverinfo="skip",
            ),
            go.Scatter(
                x=days["day"], y=pp["ci_low"], mode="lines", line={"width": 0}, fill="tonexty",
                fillcolor="rgba(47,111,223,0.18)", name=band, hoverinfo="skip",
            ),
            go.Scatter(
                x=days["day"], y=pp["lift"], mode="lines+markers", name=t("camp_lift"),
                line={"color": PLAIN_COLOR}, hovertemplate="%{x:g}: %{y:+.2f} pp<extra></extra>",
            ),
        ]
    )  # fmt: skip
    fig.add_hline(y=0, line_dash="dash", line_color="#98a2b3")
    if elapsed is not None:
        fig.add_vline(
            x=elapsed, line_dash="dot", line_color="#667085", annotation_text=t("camp_today")
        )
        fig.update_xaxes(range=[0.5, r.window_days + 0.5])
    fig.update_layout(
        title=t("camp_over_time").format(conf=conf),
        xaxis_title=t("camp_days_after"),
        yaxis_title=t("camp_axis_pp"),
        yaxis_ticksuffix=" pp",
    )
    return _chart_card(figure(fig, height=340))


def _funnel_chart(t: Translator, r: CampaignReport) -> str:
    import plotly.graph_objects as go

    f = r.funnel
    steps = [
        ("camp_sent", "sent"),
        ("camp_opened", "opened"),
        ("camp_clicked", "clicked"),
        ("camp_converted_step", "converted"),
    ]
    counts = [int(f[k]) for _, k in steps]
    sent = counts[0]
    text = [f"{n:,}" + (f" ({n / sent:.1%})" if sent else "") for n in counts]
    fig = go.Figure(
        go.Bar(
            x=[t(label) for label, _ in steps],
            y=counts,
            text=text,
            textposition="outside",
            cliponaxis=False,
            marker_color=PALETTE[:4],
            hovertemplate="%{x}: %{y:,}<extra></extra>",
        )
    )
    fig.update_layout(
        title=t("camp_funnel"),
        xaxis_title=t("camp_step"),
        yaxis_title=t("camp_members_axis"),
        yaxis_range=[0, max(*counts, 1) * 1.15],
    )
    return _chart_card(figure(fig, height=340))


def _chart_card(chart: str) -> str:
    """A chart in a card of its own (the report's and the dashboard's ``.card``)."""
    return f'<div class="card chart-card">{chart}</div>'
