"""Campaigns: the list with each campaign's headline lift, one campaign's report (the HTML
report's own block), its definition and sample messages, a send (admin, a job), and the builder
(admin) that shows the audience size and the expected incremental profit live as its
conditions change."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from jingzhun.api.deps import get_state
from jingzhun.campaign.spec import MAX_VARIANTS, TOP_SCORES, problem_field
from jingzhun.contracts.events import EVENT_NAMES
from jingzhun.errors import InputError, JingzhunError, NotFoundError
from jingzhun.report.campaign_sections import campaign_report
from jingzhun.report.html import figure
from jingzhun.report.i18n import Translator, register
from jingzhun.web.common import (
    PAGE,
    admin_form,
    fmt,
    lang_of,
    number,
    problem,
    render,
    sessions,
    signed_in,
)
from jingzhun.web.pages.users import event_words

router = APIRouter(include_in_schema=False)

register(
    {
        # the list
        "web_campaigns_new": ("New campaign", "新建活动"),
        "web_campaigns_none": (
            "No campaigns yet. Build one with “New campaign” (an admin key), or from a spec "
            "file: jingzhun campaign create SPEC.",
            "还没有营销活动。点击“新建活动”创建（需要 admin 密钥），或用规格文件创建："
            "jingzhun campaign create 规格文件。",
        ),
        "web_campaigns_col_campaign": ("Campaign", "活动"),
        "web_campaigns_col_state": ("State", "状态"),
        "web_campaigns_col_channel": ("Channel", "渠道"),
        "web_campaigns_col_sent_at": ("Sent at", "发送时间"),
        "web_campaigns_col_sent": ("Messages sent", "发送数"),
        "web_campaigns_col_control": ("Control group", "对照组人数"),
        "web_campaigns_col_lift": ("Conversion lift (95% interval)", "转化率提升（95% 区间）"),
        "web_campaigns_state_draft": ("Draft", "草稿"),
        "web_campaigns_state_sending": ("Sending", "发送中"),
        "web_campaigns_state_sent": ("Sent", "已发送"),
        "web_campaigns_channel_email": ("Email", "邮件"),
        "web_campaigns_channel_webhook": ("Webhook", "Webhook 推送"),
        "web_campaigns_channel_ads": ("Ad audience", "广告人群"),
        "web_campaigns_window_open": ("window still open", "转化窗口未结束"),
        "web_campaigns_not_sent": ("not sent yet", "尚未发送"),
        "web_campaigns_lift_chart": (
            "Conversion lift by campaign, 95% interval",
            "各活动的转化率提升（95% 区间）",
        ),
        "web_campaigns_lift_help": (
            "Lift: the treatment arm's conversion rate minus the control group's, in "
            "percentage points, over each campaign's conversion window. Green: the whole "
            "interval is above zero; red: below zero; grey: not distinguishable from zero.",
            "提升：实验组转化率减去对照组转化率（百分点），按各活动的转化窗口计算。绿色：整个"
            "区间在零以上；红色：在零以下；灰色：与零无法区分。",
        ),
        # one campaign
        "web_campaigns_unknown": (
            "There is no campaign {value!r}; pick one from the list.",
            "没有名为 {value!r} 的营销活动，请从列表中选择。",
        ),
        "web_campaigns_all": ("All campaigns", "全部活动"),
        "web_campaigns_report": ("What the campaign caused", "活动效果"),
        "web_campaigns_draft_note": (
            "A draft: nothing has been sent. Below are the audience it would draw now and "
            "sample messages; the report appears once it is sent.",
            "草稿：尚未发送。下面是现在发送时会抽取的人群和消息样例；发送后这里会显示效果报告。",
        ),
        "web_campaigns_no_report": ("No report: {reason}", "无法生成报告：{reason}"),
        "web_campaigns_audience_now": ("Audience if sent now", "现在发送时的人群"),
        "web_campaigns_matched": ("Match the conditions", "符合条件"),
        "web_campaigns_members": ("Members", "成员"),
        "web_campaigns_treatment": ("Treatment (messaged)", "实验组（发送）"),
        "web_campaigns_control": ("Control (held out)", "对照组（不发送）"),
        "web_campaigns_step": ("Step", "步骤"),
        "web_campaigns_removed": ("Left out", "排除"),
        "web_campaigns_remaining": ("Remaining", "剩余"),
        "web_campaigns_step_no_consent": ("No marketing consent", "无营销许可"),
        "web_campaigns_step_no_address": ("No address to reach", "无可用联系地址"),
        "web_campaigns_step_suppressed": (
            "Suppressed (bounced or unsubscribed)",
            "已屏蔽（退信或退订）",
        ),
        "web_campaigns_step_already_member": ("Already a member", "已是成员"),
        "web_campaigns_step_bought": ("Bought in the last {days} days", "最近 {days} 天内购买过"),
        "web_campaigns_step_in_campaign": ("Member of campaign {name}", "已在活动 {name} 中"),
        "web_campaigns_step_cap": (
            "Already got {n} messages in {days} days",
            "{days} 天内已收到 {n} 条消息",
        ),
        "web_campaigns_step_top": ("Keep the top {n} by {score}", "按{score}保留前 {n} 名"),
        "web_campaigns_step_random": ("Keep {n} drawn at random", "随机保留 {n} 人"),
        "web_campaigns_top_random": ("{n} drawn at random", "随机抽取 {n} 人"),
        "web_campaigns_step_share": ("Keep a random {share}", "随机保留 {share}"),
        "web_campaigns_score_uplift": ("uplift", "增益分"),
        "web_campaigns_score_propensity": ("purchase propensity", "购买倾向"),
        "web_campaigns_score_clv": ("customer lifetime value", "客户终身价值"),
        "web_campaigns_score_random": ("a random draw", "随机抽取"),
        "web_campaigns_expected": ("Expected incremental profit", "预期增量利润"),
        "web_campaigns_expected_detail": (
            "≈ {conv} incremental orders × average order {aov} × margin {margin} − {n} "
            "messages × {cost}",
            "≈ {conv} 笔增量订单 × 平均订单金额 {aov} × 毛利率 {margin} − {n} 条消息 × {cost}",
        ),
        "web_campaigns_expected_note": (
            "An estimate from the uplift model {model}: the sum of its uplift scores over the "
            "treatment arm ({scored} of {treated} members scored). The report measures the "
            "real lift after the send.",
            "这是基于增益模型 {model} 的估算：实验组成员增益分之和（{treated} 人中 {scored} 人"
            "有评分）。发送后，报告会测量真实的提升。",
        ),
        "web_campaigns_no_uplift": (
            "No uplift model has scored users yet, so there is no profit estimate (train one "
            "on a past campaign: jingzhun predict uplift; then jingzhun predict score uplift).",
            "还没有增益模型为用户评分，因此无法估算利润（先用历史活动训练："
            "jingzhun predict uplift，再运行 jingzhun predict score uplift）。",
        ),
        "web_campaigns_send": ("Send to {n} members", "发送给 {n} 位成员"),
        "web_campaigns_dry_run": (
            "Dry run: draw the audience and render every message; send and store nothing",
            "试运行：抽取人群并渲染全部消息，但不发送、不保存",
        ),
        "web_campaigns_send_help": (
            "The send runs as a job; its page shows the progress.",
            "发送作为后台任务运行，任务页面会显示进度。",
        ),
        "web_campaigns_already_sent": (
            "Campaign {value!r} has been sent already; its report is on its page.",
            "活动 {value!r} 已经发送过，效果报告见活动页面。",
        ),
        # the definition
        "web_campaigns_spec": ("Definition", "活动设置"),
        "web_campaigns_description": ("Description", "描述"),
        "web_campaigns_audience": ("Audience", "目标人群"),
        "web_campaigns_everyone": ("Every profiled user", "全部已建画像的用户"),
        "web_campaigns_tags": ("Tags (every one must hold)", "标签（须全部满足）"),
        "web_campaigns_where": ("Conditions", "条件"),
        "web_campaigns_top": ("Top by score", "按评分取前 N 名"),
        "web_campaigns_top_value": ("the {n} highest by {score}", "按{score}最高的 {n} 人"),
        "web_campaigns_share": ("Random share of the eligible", "随机抽取比例"),
        "web_campaigns_exclusions": ("Exclusions", "排除规则"),
        "web_campaigns_x_consent": ("Users without marketing consent", "无营销许可的用户"),
        "web_campaigns_x_suppressed": (
            "Suppressed addresses (always)",
            "已屏蔽的地址（始终排除）",
        ),
        "web_campaigns_x_cap": (
            "Users who already got {n} messages in {days} days",
            "{days} 天内已收到 {n} 条消息的用户",
        ),
        "web_campaigns_x_campaigns": ("Members of: {names}", "以下活动的成员：{names}"),
        "web_campaigns_control_group": ("Control group", "对照组"),
        "web_campaigns_control_value": ("{share} held out at random", "随机留出 {share}"),
        "web_campaigns_stratified": (", stratified by segment run {run}", "，按分群 {run} 分层"),
        "web_campaigns_variants": ("Message variants", "消息版本"),
        "web_campaigns_weight": ("Share of members", "成员占比"),
        "web_campaigns_subject": ("Subject", "主题"),
        "web_campaigns_format": ("Format", "格式"),
        "web_campaigns_body": ("Template", "模板"),
        "web_campaigns_chars": ("{n} characters", "{n} 个字符"),
        "web_campaigns_recommendations": ("Recommendations per message", "每条消息的推荐数"),
        "web_campaigns_offer": ("Offer and costs", "优惠与成本"),
        "web_campaigns_cost_per_message": ("Cost per message", "每条消息成本"),
        "web_campaigns_margin": ("Margin on an order", "订单毛利率"),
        "web_campaigns_discount": ("Discount", "折扣"),
        "web_campaigns_window": ("Conversion window", "转化窗口"),
        "web_campaigns_days": ("{days} days", "{days} 天"),
        "web_campaigns_category": ("Category", "品类"),
        "web_campaigns_trigger": ("Trigger", "触发条件"),
        "web_campaigns_trigger_value": (
            "{event} between {after} minutes and {hours} hours ago",
            "{after} 分钟至 {hours} 小时前发生 {event}",
        ),
        "web_campaigns_trigger_without": (", and no {event} since", "，且此后没有 {event}"),
        "web_campaigns_no_trigger": (
            "None: one send to the audience drawn at the send",
            "无：发送时抽取人群，一次性发送",
        ),
        # previews
        "web_campaigns_previews": ("Sample messages", "消息样例"),
        "web_campaigns_show_previews": (
            "Show sample messages (draws the audience as it is now)",
            "查看消息样例（按当前数据抽取受众）",
        ),
        "web_campaigns_previews_note": (
            "Rendered now for {n} members of the treatment arm the audience would draw today. "
            "The HTML is shown in a sandbox: no script runs in it.",
            "按今天抽取的人群，为实验组中的 {n} 位成员即时渲染。HTML 在沙箱中显示，其中的脚本"
            "不会运行。",
        ),
        "web_campaigns_no_previews": (
            "An ad audience sends no message: there is nothing to preview.",
            "广告人群不发送消息，没有可预览的内容。",
        ),
        "web_campaigns_no_members": (
            "No member would get a message now: nothing to preview.",
            "现在没有成员会收到消息，没有可预览的内容。",
        ),
        "web_campaigns_preview_failed": (
            "The messages cannot be rendered: {reason}",
            "消息无法渲染：{reason}",
        ),
        "web_campaigns_member": ("Member", "成员"),
        "web_campaigns_preview_of": (
            "Message to {user} · variant {variant}",
            "发给 {user} 的消息 · 版本 {variant}",
        ),
        # the builder
        "web_campaigns_basics": ("Basics", "基本信息"),
        "web_campaigns_name_help": (
            "Lower-case letters, digits, - and _ (it appears in links and reports).",
            "小写字母、数字、- 和 _（会出现在链接和报告中）。",
        ),
        "web_campaigns_channel_help": (
            "An ad audience exports the treatment arm as a hashed customer list; it sends no "
            "message.",
            "广告人群会把实验组导出为哈希后的客户名单，不发送消息。",
        ),
        "web_campaigns_segment_any": ("Any segment", "不限分群"),
        "web_campaigns_users_in": ("{n} users", "{n} 人"),
        "web_campaigns_tags_help": (
            "Ctrl (⌘) + click to pick several; a member carries every tag picked.",
            "按住 Ctrl（⌘）点击可多选；成员须带有所选的全部标签。",
        ),
        "web_campaigns_conditions": ("Trait conditions", "特征条件"),
        "web_campaigns_trait": ("Trait", "特征"),
        "web_campaigns_op": ("Comparison", "比较"),
        "web_campaigns_value": ("Value", "数值"),
        "web_campaigns_no_trait": ("(none)", "（无）"),
        "web_campaigns_more_where": ("More conditions (an expression)", "更多条件（表达式）"),
        "web_campaigns_where_help": (
            "For example recency_days < 60 and monetary > 100; joined to the rows above with and.",
            "例如 recency_days < 60 and monetary > 100；与上面的条件以 and 连接。",
        ),
        "web_campaigns_top_by": ("Keep the top N by", "按评分保留前 N 名"),
        "web_campaigns_top_none": ("Everyone eligible", "全部符合条件者"),
        "web_campaigns_top_n": ("N", "N"),
        "web_campaigns_share_field": (
            "Or keep a random share (0–1)",
            "或随机保留一部分（0–1）",
        ),
        "web_campaigns_no_consent_field": (
            "Leave out users without marketing consent (always for email)",
            "排除无营销许可的用户（邮件必须排除）",
        ),
        "web_campaigns_bought_field": (
            "Leave out buyers of the last … days",
            "排除最近 … 天内购买过的用户",
        ),
        "web_campaigns_cap_messages": ("Frequency cap: messages", "频次上限：消息数"),
        "web_campaigns_cap_days": ("… in days", "… 天内"),
        "web_campaigns_exclude_campaigns": (
            "Leave out the members of these campaigns",
            "排除以下活动的成员",
        ),
        "web_campaigns_suppressed_note": (
            "Suppressed addresses (bounces, unsubscribes) are always left out.",
            "已屏蔽的地址（退信、退订）始终排除。",
        ),
        "web_campaigns_control_share": ("Control share (0–1)", "对照组比例（0–1）"),
        "web_campaigns_control_help": (
            "Held out at random and measured against: 0.2 = 20%.",
            "随机留出、用于对比：0.2 即 20%。",
        ),
        "web_campaigns_stratify": (
            "Stratify by the segment run (the same share held out in every segment)",
            "按分群分层（每个分群留出相同比例）",
        ),
        "web_campaigns_variant_n": ("Variant {n}", "版本 {n}"),
        "web_campaigns_variant_name": ("Name", "名称"),
        "web_campaigns_weight_field": ("Weight", "权重"),
        "web_campaigns_subject_field": ("Subject (email)", "主题（邮件）"),
        "web_campaigns_body_field": ("Template", "模板"),
        "web_campaigns_body_help": (
            "Jinja2: {{ first_name }}, {{ user.monetary }}, {% for r in recommendations %}"
            "{{ r.title }} · {{ r.reason_text }}{% endfor %}, {{ unsubscribe_url }}.",
            "Jinja2 模板：{{ first_name }}、{{ user.monetary }}、{% for r in recommendations %}"
            "{{ r.title }} · {{ r.reason_text }}{% endfor %}、{{ unsubscribe_url }}。",
        ),
        "web_campaigns_add_variant": ("Add a variant", "添加版本"),
        "web_campaigns_ads_no_variants": (
            "An ad audience sends no message: variants are not used.",
            "广告人群不发送消息，不使用消息版本。",
        ),
        "web_campaigns_margin_field": ("Margin on an order (0–1)", "订单毛利率（0–1）"),
        "web_campaigns_discount_field": ("Discount (0–1)", "折扣（0–1）"),
        "web_campaigns_window_field": ("Conversion window (days)", "转化窗口（天）"),
        "web_campaigns_offer_help": (
            "Cost and margin price the expected profit and the report's ROI; the discount and "
            "category are shown to the message's template; orders within the window count as "
            "conversions.",
            "成本和毛利率用于估算预期利润和报告中的投资回报率；折扣和品类可在消息模板中使用；"
            "转化窗口内的订单计为转化。",
        ),
        "web_campaigns_trigger_optional": (
            "Trigger (optional): take users in as they qualify",
            "触发条件（可选）：用户满足条件时加入",
        ),
        "web_campaigns_trigger_event": ("After the event", "在该事件之后"),
        "web_campaigns_trigger_none": ("No trigger", "不使用触发"),
        "web_campaigns_trigger_without_field": ("Unless followed by", "除非随后发生"),
        "web_campaigns_after_minutes": ("At least … minutes later", "至少 … 分钟后"),
        "web_campaigns_lookback_hours": ("Within … hours", "… 小时内"),
        "web_campaigns_save": ("Save as draft", "保存为草稿"),
        "web_campaigns_cancel": ("Cancel", "取消"),
        "web_campaigns_live": ("Audience size, live", "实时人群规模"),
        "web_campaigns_updating": ("Updating…", "更新中…"),
        "web_campaigns_fix": (
            "Fix the fields marked in red to see the audience.",
            "请修正标红的字段以查看人群。",
        ),
        "web_campaigns_fix_form": (
            "Some fields need fixing: see the messages beside them.",
            "部分字段需要修改，见各字段旁的提示。",
        ),
        "web_campaigns_not_number": (
            "must be a number, not {value!r}",
            "须为数字，而不是 {value!r}",
        ),
        "web_campaigns_not_whole": (
            "must be a whole number, not {value!r}",
            "须为整数，而不是 {value!r}",
        ),
        "web_campaigns_needs_n": ("give N: how many to keep", "请填写 N：保留多少人"),
        "web_campaigns_needs_trait": ("pick a trait for this value", "请为该数值选择特征"),
        "web_campaigns_offline": (
            "The server did not answer; the numbers may be out of date.",
            "服务器没有响应，数字可能不是最新的。",
        ),
    }
)

#: Traits the builder's condition rows offer, with their labels (any other trait can be
#: named in the free expression).
TRAITS = {
    "recency_days": ("Days since the last order", "距上次下单天数"),
    "frequency": ("Orders", "订单数"),
    "monetary": ("Spend", "消费金额"),
    "aov": ("Average order value", "客单价"),
    "tenure_days": ("Days since the first visit", "首次访问至今天数"),
    "days_since_seen": ("Days since the last visit", "距上次访问天数"),
    "active_days": ("Active days", "活跃天数"),
    "sessions": ("Sessions", "会话数"),
    "distinct_items": ("Distinct items bought", "购买过的不同商品数"),
    "discount_share": ("Share of spend on discount", "折扣消费占比"),
    "price_percentile": ("Price level (percentile)", "价格档位（百分位）"),
    "refund_rate": ("Refund rate", "退款率"),
    "email_open_rate": ("Email open rate", "邮件打开率"),
    "view_to_cart": ("Views to cart rate", "浏览加购率"),
    "cart_to_purchase": ("Cart to purchase rate", "加购购买率"),
    "n_email_clicked": ("Email clicks", "邮件点击次数"),
    "n_product_viewed": ("Products viewed", "浏览商品次数"),
    "score": ("Profile score P(u)", "画像综合分 P(u)"),
}
register({f"web_campaigns_trait_{k}": v for k, v in TRAITS.items()})
OPS = ("<", "<=", ">", ">=", "==", "!=")
#: Condition rows in the builder.
CONDITIONS = 3
#: A campaign name that stands in for one not typed yet while the builder sizes an audience.
DRAFT_NAME = "new-campaign"
#: The form's fields, by the spec's field each fills (a dotted path; see ``problem_field``).
FIELDS = {
    "name": "name",
    "description": "description",
    "channel": "channel",
    "audience": "share",
    "audience.segment": "segment",
    "audience.tags": "tags",
    "audience.where": "where",
    "audience.top": "top_n",
    "audience.top.score": "top_score",
    "audience.top.n": "top_n",
    "audience.share": "share",
    "exclude": "no_consent",
    "exclude.no_consent": "no_consent",
    "exclude.suppressed": "no_consent",
    "exclude.bought_within_days": "bought_within_days",
    "exclude.frequency_cap": "cap_messages",
    "exclude.frequency_cap.messages": "cap_messages",
    "exclude.frequency_cap.days": "cap_days",
    "exclude.campaigns": "exclude_campaigns",
    "control": "control_share",
    "control.share": "control_share",
    "control.stratify": "stratify",
    "recommendations": "recommendations",
    "offer": "cost_per_message",
    "offer.cost_per_message": "cost_per_message",
    "offer.margin": "margin",
    "offer.discount": "discount",
    "offer.conversion_window_days": "window_days",
    "offer.category": "category",
    "trigger": "trigger_after_minutes",
    "trigger.event": "trigger_event",
    "trigger.without": "trigger_without",
    "trigger.after_minutes": "trigger_after_minutes",
    "trigger.lookback_hours": "trigger_lookback_hours",
    "variants": "variant_1_name",
}
#: Fields that change who is in the audience (an error there leaves no size to show).
AUDIENCE_FIELDS = re.compile(
    r"^(channel|segment|tags|where|cond_.*|top_.*|share|no_consent|bought_within_days|cap_.*|"
    r"exclude_campaigns|control_share|stratify|trigger_.*)$"
)


# -- the list -----------------------------------------------------------------------------------


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, page: str | None = None) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    listed = ws.campaigns.list()
    pages = max(1, -(-len(listed) // PAGE))
    at = min(number(page, 1), pages)
    rows = []
    for r in listed.iloc[(at - 1) * PAGE : at * PAGE].to_dict("records"):
        row = {**r, "lift": None, "why": None}
        row["description"] = r.get("description") if isinstance(r.get("description"), str) else None
        if r["state"] == "draft":
            row["why"] = t("web_campaigns_not_sent")
        else:
            try:
                h = ws.evaluate.headline(r["name"])
            except InputError as err:  # an empty arm
                row["why"] = str(err)
            else:
                row["lift"] = h.conversion
                row["window_open"] = not h.window_complete
        rows.append(row)
    measured = [r for r in rows if r["lift"] is not None]
    return render(
        request,
        "campaigns.html",
        session,
        rows=rows,
        chart=_lift_chart(measured, t) if measured else None,
        page=at,
        pages=pages,
    )


def _lift_chart(rows: list[dict[str, Any]], t: Translator) -> str:
    """Each measured campaign's conversion lift with its interval, in percentage points."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in reversed(rows):  # the newest on top
        lift = r["lift"]
        colour = _colour(lift)
        fig.add_trace(
            go.Scatter(
                x=[100 * lift["lift"]],
                y=[r["name"]],
                mode="markers",
                marker={"size": 11, "color": colour},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [100 * (lift["ci_high"] - lift["lift"])],
                    "arrayminus": [100 * (lift["lift"] - lift["ci_low"])],
                    "color": colour,
                    "thickness": 2,
                    "width": 8,
                },
                showlegend=False,
                hovertemplate="%{y}: %{x:+.2f} pp<extra></extra>",
            )
        )
    fig.add_vline(x=0, line_dash="dash", line_color="#98a2b3")
    fig.update_layout(
        title=t("web_campaigns_lift_chart"),
        xaxis_title=t("camp_axis_pp"),
        yaxis_title=t("web_campaigns_col_campaign"),
        xaxis_ticksuffix=" pp",
        yaxis={"type": "category", "automargin": True},
    )
    return figure(fig, height=max(240, 130 + 48 * len(rows)))


def _colour(lift: dict[str, Any]) -> str:
    if lift["ci_low"] is not None and lift["ci_low"] > 0:
        return "#12805c"
    if lift["ci_high"] is not None and lift["ci_high"] < 0:
        return "#c0392b"
    return "#667085"


# -- the builder --------------------------------------------------------------------------------


@router.get("/campaigns/new", response_class=HTMLResponse)
def builder_page(request: Request) -> Response:
    session = signed_in(request)
    if not session.admin:
        return problem(request, session, 403, "needs_admin", title="web_refused", back="/campaigns")
    return _builder(request, session, _DEFAULTS, {}, status=200)


@router.post("/campaigns/new")
async def create_campaign(request: Request) -> Response:
    got = await admin_form(request)
    if isinstance(got, Response):
        return got
    session, _ = got
    fields = await _fields(request)
    raw, slots, errors = _spec(fields, Translator(lang_of(request)))
    if not errors:
        state = get_state(request)
        try:
            await _wait(state.run_write(lambda ws: ws.campaigns.create(raw)))
        except JingzhunError as err:
            errors[_field(problem_field(err, raw), slots)] = str(err)
        else:
            return RedirectResponse(f"/campaigns/{quote(raw['name'], safe='')}", status_code=303)
    return await run_in_threadpool(_builder, request, session, fields, errors, 422)


async def _wait(future: Any) -> Any:
    return await asyncio.wrap_future(future)


@router.post("/campaigns/audience")
async def audience_size(request: Request) -> Response:
    """The live size of the builder's audience and its expected incremental profit, as JSON
    (read scope is enough: nothing is stored)."""
    session = signed_in(request)
    fields = await _fields(request)
    token = request.headers.get("x-csrf-token") or _one(fields, "csrf")
    lang = lang_of(request)
    t = Translator(lang)
    if not sessions(request).check_csrf(session, token):
        return JSONResponse({"errors": [{"field": "", "message": t("forbidden")}]}, status_code=403)
    # Problems with what was typed are part of the answer (a 200: the builder asked how the
    # form stands, and it is told), not a failed request.
    return JSONResponse(await run_in_threadpool(_estimate, request, fields, t))


def _estimate(request: Request, fields: dict[str, list[str]], t: Translator) -> dict[str, Any]:
    """The builder's live panel: the audience the form draws now, its expected profit, and
    the problems of what was typed. A name or a message not written yet does not keep the
    size from showing: stand-ins take their place until the form is saved."""
    ws = get_state(request).readers.get()
    raw, slots, errors = _spec(fields, t)
    sizing = dict(raw)
    if not sizing.get("name"):
        sizing["name"] = DRAFT_NAME
    if sizing.get("channel") != "ads" and not sizing.get("variants"):
        sizing["variants"] = [{"name": "a", "subject": "-", "body": "-"}]
    offer_ok = True
    estimate = None
    for _ in range(4):  # each problem outside the audience is set aside, once
        try:
            estimate = ws.campaigns.estimate(sizing)
            break
        except JingzhunError as err:
            path = problem_field(err, sizing)
            field = _field(path, slots)
            errors.setdefault(field, str(err))
            top = path.split(".")[0]
            if AUDIENCE_FIELDS.match(field) or top not in (
                "name",
                "description",
                "variants",
                "offer",
                "recommendations",
            ):
                break
            if top == "name":
                sizing["name"] = DRAFT_NAME
            elif top == "description":
                sizing.pop("description", None)
            elif top == "variants":
                sizing["variants"] = [{"name": "a", "subject": "-", "body": "-"}]
            elif top == "offer":
                sizing.pop("offer", None)
                offer_ok = False
            else:
                sizing.pop("recommendations", None)
    answer: dict[str, Any] = {
        "errors": [{"field": k, "message": v} for k, v in errors.items()],
        "audience": None,
        "expected": None,
    }
    if estimate is None or any(AUDIENCE_FIELDS.match(k) for k in errors):
        answer["audience"] = None
        return answer
    answer["audience"] = _audience_view(estimate.audience.to_dict(), t)
    if offer_ok:
        answer["expected"] = _expected_view(estimate.expected, t)
    return answer


def _builder(
    request: Request,
    session: Any,
    fields: dict[str, list[str]],
    errors: dict[str, str],
    status: int,
) -> Response:
    ws = get_state(request).readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    live = _estimate(request, fields, t) if not errors else None
    return render(
        request,
        "campaign_new.html",
        session,
        status=status,
        f=_Form(fields),
        errors=errors,
        segments=_segment_options(ws, lang),
        tags=_tag_options(ws),
        traits=_trait_options(ws, t),
        ops=OPS,
        conditions=range(1, CONDITIONS + 1),
        scores=TOP_SCORES,
        campaigns=ws.campaigns.list()["name"].astype(str).tolist(),
        events=[(e, event_words(t, e)) for e in sorted(EVENT_NAMES)],
        variant_slots=_variant_slots(fields),
        live=live,
    )


class _Form:
    """The form's values as typed (lists for the fields that take several)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def __call__(self, key: str, default: str = "") -> str:
        values = self._fields.get(key)
        return values[0] if values else default

    def all(self, key: str) -> list[str]:
        return self._fields.get(key, [])

    def checked(self, key: str) -> bool:
        return bool(self._fields.get(key))


_DEFAULTS: dict[str, list[str]] = {
    "channel": ["email"],
    "no_consent": ["1"],
    "control_share": ["0.2"],
    "recommendations": ["3"],
    "margin": ["0.3"],
    "cost_per_message": ["0"],
    "discount": ["0"],
    "window_days": ["7"],
    "variant_1_name": ["a"],
    "variant_1_weight": ["1"],
    "variant_1_format": ["html"],
    "trigger_after_minutes": ["60"],
    "trigger_lookback_hours": ["24"],
}


async def _fields(request: Request) -> dict[str, list[str]]:
    """The posted form with every value of a field that takes several (the body is read once
    and kept by the request)."""
    body = (await request.body()).decode("utf-8", "replace")
    return parse_qs(body, keep_blank_values=True)


def _one(fields: dict[str, list[str]], key: str) -> str:
    values = fields.get(key)
    return values[0].strip() if values else ""


def _variant_slots(fields: dict[str, list[str]]) -> list[int]:
    """The variant slots to show: every slot posted, at least one."""
    used = {
        int(m.group(1))
        for k in fields
        if (m := re.match(r"^variant_(\d{1,3})_", k)) and 1 <= int(m.group(1)) <= MAX_VARIANTS
    }
    return list(range(1, max(used or {1}) + 1))


def _spec(
    fields: dict[str, list[str]], t: Translator
) -> tuple[dict[str, Any], list[int], dict[str, str]]:
    """The spec the form describes (the JSON structure ``ws.campaigns.create`` takes), the form
    slot of each variant kept, and the values that are not numbers where numbers belong."""
    errors: dict[str, str] = {}

    def num(key: str, whole: bool = False) -> float | int | None:
        text = _one(fields, key)
        if not text:
            return None
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            key_ = "web_campaigns_not_whole" if whole else "web_campaigns_not_number"
            errors[key] = t(key_).format(value=text[:40])
            return None
        if not math.isfinite(value):
            errors[key] = t("web_campaigns_not_number").format(value=text[:40])
            return None
        return value

    raw: dict[str, Any] = {"name": _one(fields, "name"), "channel": _one(fields, "channel")}
    if _one(fields, "description"):
        raw["description"] = _one(fields, "description")
    audience: dict[str, Any] = {}
    if _one(fields, "segment"):
        audience["segment"] = _one(fields, "segment")
    tags = [v.strip() for v in fields.get("tags", []) if v.strip()]
    if tags:
        audience["tags"] = tags
    parts = []
    for i in range(1, CONDITIONS + 1):
        trait, op, value = (_one(fields, f"cond_{k}_{i}") for k in ("trait", "op", "value"))
        if not value and not trait:
            continue
        if not trait:
            errors[f"cond_value_{i}"] = t("web_campaigns_needs_trait")
            continue
        n = num(f"cond_value_{i}")
        if n is None and f"cond_value_{i}" not in errors:
            errors[f"cond_value_{i}"] = t("web_campaigns_not_number").format(value=value)
        if n is not None and trait in TRAITS and op in OPS:
            parts.append(f"{trait} {op} {n:g}")
    if _one(fields, "where"):
        parts.append(f"({_one(fields, 'where')})" if parts else _one(fields, "where"))
    if parts:
        audience["where"] = " and ".join(parts)
    score = _one(fields, "top_score")
    top_n = num("top_n", whole=True)
    if score:
        if top_n is None and "top_n" not in errors:
            errors["top_n"] = t("web_campaigns_needs_n")
        audience["top"] = {"score": score, "n": top_n if top_n is not None else 1}
    share = num("share")
    if share is not None:
        audience["share"] = share
    if audience:
        raw["audience"] = audience
    exclude: dict[str, Any] = {"no_consent": bool(fields.get("no_consent"))}
    bought = num("bought_within_days")
    if bought is not None:
        exclude["bought_within_days"] = bought
    messages, days = num("cap_messages", whole=True), num("cap_days")
    if messages is not None or days is not None:
        exclude["frequency_cap"] = {
            k: v for k, v in (("messages", messages), ("days", days)) if v is not None
        }
    others = [v for v in fields.get("exclude_campaigns", []) if v]
    if others:
        exclude["campaigns"] = others
    raw["exclude"] = exclude
    control: dict[str, Any] = {"stratify": bool(fields.get("stratify"))}
    control_share = num("control_share")
    if control_share is not None:
        control["share"] = control_share
    raw["control"] = control
    variants, slots = [], []
    if raw["channel"] != "ads":  # an ad audience sends no message
        for i in _variant_slots(fields):
            v = {k: _one(fields, f"variant_{i}_{k}") for k in ("name", "subject", "body")}
            if not v["subject"] and not v["body"]:  # a slot not written in (name has a default)
                continue
            variant: dict[str, Any] = {k: x for k, x in v.items() if x}
            variant.setdefault("name", "")
            weight = num(f"variant_{i}_weight")
            if weight is not None:
                variant["weight"] = weight
            if _one(fields, f"variant_{i}_format") in ("html", "text"):
                variant["format"] = _one(fields, f"variant_{i}_format")
            variants.append(variant)
            slots.append(i)
    if variants:
        raw["variants"] = variants
    recommendations = num("recommendations", whole=True)
    if recommendations is not None:
        raw["recommendations"] = recommendations
    offer: dict[str, Any] = {}
    for key, name in (
        ("cost_per_message", "cost_per_message"),
        ("margin", "margin"),
        ("discount", "discount"),
        ("window_days", "conversion_window_days"),
    ):
        value = num(key)
        if value is not None:
            offer[name] = value
    if _one(fields, "category"):
        offer["category"] = _one(fields, "category")
    if offer:
        raw["offer"] = offer
    if _one(fields, "trigger_event"):
        trigger: dict[str, Any] = {"event": _one(fields, "trigger_event")}
        if _one(fields, "trigger_without"):
            trigger["without"] = _one(fields, "trigger_without")
        for key in ("after_minutes", "lookback_hours"):
            value = num(f"trigger_{key}")
            if value is not None:
                trigger[key] = value
        raw["trigger"] = trigger
    return raw, slots, errors


def _field(path: str, slots: list[int]) -> str:
    """The form field of a spec field (a dotted path), or ``""`` for the form as a whole."""
    m = re.match(r"^variants\.(\d+)(?:\.(\w+))?", path)
    if m:
        i = int(m.group(1))
        slot = slots[i] if i < len(slots) else 1
        part = {"template": "body"}.get(m.group(2) or "name", m.group(2) or "name")
        if part not in ("name", "subject", "body", "weight", "format"):
            part = "name"
        return f"variant_{slot}_{part}"
    parts = path.split(".") if path else []
    while parts:
        found = FIELDS.get(".".join(parts))
        if found:
            return found
        parts.pop()
    return ""


def _segment_options(ws: Any, lang: str) -> list[dict[str, Any]]:
    """Each active segment run with its segments' names in the language, for the picker."""
    out = []
    runs = ws.segments.list()
    for run in runs[runs["active"]].to_dict("records"):
        try:
            info = ws.segments.get(run["run_id"], lang=lang)
        except NotFoundError:
            continue
        out.append(
            {
                "name": run["name"],
                "method": run["method"],
                "segments": [
                    {
                        "value": f"{run['name']}:{p['segment']}",
                        "label": p["label"],
                        "users": p.get("users"),
                    }
                    for p in info.portraits
                ],
            }
        )
    return out


def _tag_options(ws: Any) -> list[dict[str, Any]]:
    try:
        tags = ws.profiles.tags()
    except NotFoundError:
        return []
    tags = tags.sort_values(["tag", "users"], ascending=[True, False])
    return [
        {
            "value": f"{r['tag']}={r['value']}",
            "tag": r["tag"],
            "label": r["value"],
            "users": r["users"],
        }
        for r in tags.to_dict("records")
    ]


def _trait_options(ws: Any, t: Translator) -> list[dict[str, str]]:
    try:
        known = ws.campaigns.traits()
    except NotFoundError:
        return []
    return [{"value": k, "label": t(f"web_campaigns_trait_{k}")} for k in TRAITS if k in known]


# -- what a draw and an estimate say, in the page's language ---------------------------------


def step_label(step: str, t: Translator) -> str:
    """A draw's step (``no_consent``, ``top 356 by uplift`` …) in words."""
    simple = {"no_consent", "no_address", "suppressed", "already_member"}
    if step in simple:
        return t(f"web_campaigns_step_{step}")
    if m := re.match(r"^bought_within_(.+)_days$", step):
        return t("web_campaigns_step_bought").format(days=m.group(1))
    if m := re.match(r"^in_campaign_(.+)$", step):
        return t("web_campaigns_step_in_campaign").format(name=m.group(1))
    if m := re.match(r"^frequency_cap_(\d+)_in_(.+)_days$", step):
        return t("web_campaigns_step_cap").format(n=m.group(1), days=m.group(2))
    if m := re.match(r"^top (\d+) by random$", step):
        return t("web_campaigns_step_random").format(n=f"{int(m.group(1)):,}")
    if m := re.match(r"^top (\d+) by (\w+)$", step):
        score = t(f"web_campaigns_score_{m.group(2)}")
        return t("web_campaigns_step_top").format(n=f"{int(m.group(1)):,}", score=score)
    if m := re.match(r"^random share (.+)$", step):
        return t("web_campaigns_step_share").format(share=fmt(float(m.group(1)), "pct", t.lang))
    return step


def _audience_view(d: dict[str, Any], t: Translator) -> dict[str, Any]:
    lang = t.lang
    return {
        "matched": fmt(d["matched"], "int", lang),
        "members": fmt(d["members"], "int", lang),
        "treatment": fmt(d["treatment"], "int", lang),
        "control": fmt(d["control"], "int", lang),
        "treatment_n": d["treatment"],
        "steps": [
            {
                "label": step_label(s["step"], t),
                "removed": ("−" if s["removed"] else "") + fmt(s["removed"], "int", lang),
                "remaining": fmt(s["remaining"], "int", lang),
            }
            for s in d["steps"]
        ],
    }


def _expected_view(e: dict[str, Any] | None, t: Translator) -> dict[str, Any]:
    lang = t.lang
    if e is None:
        return {"profit": "–", "detail": "", "note": t("web_campaigns_no_uplift"), "sign": ""}
    profit = e["incremental_profit"]
    model = e.get("model_id") or "uplift"
    if e.get("model"):
        model = f"{model} ({e['model']})"
    return {
        "profit": ("+" if profit > 0 else "") + fmt(profit, "money", lang),
        "sign": "up" if profit > 0 else "down" if profit < 0 else "",
        "detail": t("web_campaigns_expected_detail").format(
            conv=f"{e['incremental_conversions']:+,.1f}",
            aov=fmt(e["average_order_value"], "money", lang),
            margin=fmt(e["margin"], "pct", lang),
            n=fmt(e["treated"], "int", lang),
            cost=fmt(e["cost_per_message"], "money", lang),
        ),
        "note": t("web_campaigns_expected_note").format(
            model=model,
            scored=fmt(e["scored"], "int", lang),
            treated=fmt(e["treated"], "int", lang),
        ),
    }


# -- one campaign ------------------------------------------------------------------------------


# ``path``: a name with a slash in it (typed or pasted) gets the page that says there is no
# such campaign, not a bare 404.
@router.get("/campaigns/{name:path}", response_class=HTMLResponse)
def campaign_page(request: Request, name: str, preview: str | None = None) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    try:
        info = ws.campaigns.get(name)
    except NotFoundError:
        return problem(
            request, session, 404, "web_campaigns_unknown", value=name[:80], back="/campaigns"
        )
    report = report_error = None
    if info.snapshot_at is not None:
        try:
            report = campaign_report(ws, t, name)
        except InputError as err:
            report_error = str(err)
    audience = expected = None
    samples: list[dict[str, Any]] = []
    preview_error = None
    # A preview draws the audience as it is now: a draft's page needs it, a sent campaign's
    # only when asked. Only the samples are rendered (the every-member template check is the
    # send's and the CLI's pre-flight).
    previewed = info.state != "sent" or preview == "1"
    if previewed:
        try:
            drawn = ws.campaigns.preview(name, sample=3, lang=lang, check=False)
        except JingzhunError as err:
            preview_error = str(err)
        else:
            samples = drawn.samples
            audience = _audience_view(drawn.audience, t)
            expected = _expected_view(drawn.expected, t)
    return render(
        request,
        "campaign.html",
        session,
        info=info,
        spec=_spec_view(ws, info.spec, t),
        report=report,
        report_error=report_error,
        audience=audience,
        expected=expected,
        samples=samples,
        preview_error=preview_error,
        previewed=previewed,
        sendable=info.state in ("draft", "sending"),
    )


@router.post("/campaigns/{name}/send")
async def send_campaign(request: Request, name: str) -> Response:
    got = await admin_form(request)
    if isinstance(got, Response):
        return got
    session, fields = got
    state = get_state(request)
    try:
        info = await run_in_threadpool(lambda: state.readers.get().campaigns.get(name))
    except NotFoundError:
        return problem(
            request, session, 404, "web_campaigns_unknown", value=name[:80], back="/campaigns"
        )
    if info.state not in ("draft", "sending"):
        return problem(
            request,
            session,
            409,
            "web_campaigns_already_sent",
            value=name,
            title="web_refused",
            back=f"/campaigns/{quote(name, safe='')}",
        )
    from jingzhun.api.jobs import KINDS

    params = KINDS["campaign_send"][0](
        name=name, lang=lang_of(request), dry_run=bool(fields.get("dry_run"))
    )
    job = state.jobs.submit("campaign_send", params)
    return RedirectResponse(f"/jobs/{quote(job.job_id, safe='')}", status_code=303)


def _spec_view(ws: Any, spec: dict[str, Any], t: Translator) -> dict[str, Any]:
    """The spec in words, in the page's language: (label, text) pairs per part, and the
    variants."""
    lang = t.lang
    a, x, c, o = spec["audience"], spec["exclude"], spec["control"], spec["offer"]
    audience: list[tuple[str, str, bool]] = []
    if a.get("segment"):
        audience.append((t("segment"), _segment_name(ws, a["segment"], lang), False))
    if a.get("tags"):
        audience.append((t("web_campaigns_tags"), ", ".join(a["tags"]), True))
    if a.get("where"):
        audience.append((t("web_campaigns_where"), a["where"], True))
    if a.get("top"):
        score = t(f"web_campaigns_score_{a['top']['score']}")
        n = fmt(a["top"]["n"], "int", lang)
        value = (
            t("web_campaigns_top_random").format(n=n)
            if a["top"]["score"] == "random"
            else t("web_campaigns_top_value").format(n=n, score=score)
        )
        audience.append((t("web_campaigns_top"), value, False))
    if a.get("share") is not None:
        audience.append((t("web_campaigns_share"), fmt(a["share"], "pct", lang), False))
    if not audience:
        audience.append((t("web_campaigns_audience"), t("web_campaigns_everyone"), False))
    exclusions = []
    if x.get("no_consent"):
        exclusions.append(t("web_campaigns_x_consent"))
    exclusions.append(t("web_campaigns_x_suppressed"))
    if x.get("bought_within_days") is not None:
        exclusions.append(
            t("web_campaigns_step_bought").format(days=f"{x['bought_within_days']:g}")
        )
    if x.get("frequency_cap"):
        cap = x["frequency_cap"]
        exclusions.append(
            t("web_campaigns_x_cap").format(n=cap["messages"], days=f"{cap['days']:g}")
        )
    if x.get("campaigns"):
        exclusions.append(t("web_campaigns_x_campaigns").format(names=", ".join(x["campaigns"])))
    control = t("web_campaigns_control_value").format(share=fmt(c["share"], "pct", lang))
    if c.get("stratify"):
        run = (
            c["stratify"]
            if isinstance(c["stratify"], str)
            else (a.get("segment") or ":").split(":")[0]
        )
        control += t("web_campaigns_stratified").format(run=run or "–")
    weights = sum(v.get("weight", 1.0) for v in spec["variants"]) or 1.0
    variants = [
        {
            "name": v["name"],
            "share": fmt(v.get("weight", 1.0) / weights, "pct", lang),
            "subject": v.get("subject"),
            "format": v.get("format")
            or ("html" if (v.get("template") or "").endswith((".html", ".htm")) else "text"),
            "body": v.get("body") or "",
        }
        for v in spec["variants"]
    ]
    offer = [
        (t("web_campaigns_cost_per_message"), fmt(o["cost_per_message"], "money", lang)),
        (t("web_campaigns_margin"), fmt(o["margin"], "pct", lang)),
        (t("web_campaigns_discount"), fmt(o["discount"], "pct", lang)),
        (
            t("web_campaigns_window"),
            t("web_campaigns_days").format(days=f"{o['conversion_window_days']:g}"),
        ),
    ]
    if o.get("category"):
        offer.append((t("web_campaigns_category"), o["category"]))
    offer.append((t("web_campaigns_recommendations"), str(spec.get("recommendations", 3))))
    trigger = t("web_campaigns_no_trigger")
    if spec.get("trigger"):
        tr = spec["trigger"]
        trigger = t("web_campaigns_trigger_value").format(
            event=event_words(t, tr["event"]),
            after=f"{tr['after_minutes']:g}",
            hours=f"{tr['lookback_hours']:g}",
        )
        if tr.get("without"):
            trigger += t("web_campaigns_trigger_without").format(
                event=event_words(t, tr["without"])
            )
    return {
        "audience": audience,
        "exclusions": exclusions,
        "control": control,
        "variants": variants,
        "offer": offer,
        "trigger": trigger,
    }


def _segment_name(ws: Any, ref: str, lang: str) -> str:
    """``run:segment`` as the run's name and the segment's portrait name in the language."""
    run, _, code = ref.partition(":")
    try:
        info = ws.segments.get(run, lang=lang)
    except NotFoundError:
        return ref
    label = next((p["label"] for p in info.portraits if str(p["segment"]) == code), None)
    return f"{run} · {label}" if label and label != code else f"{run} · {code}"


__all__ = ["router", "step_label"]
