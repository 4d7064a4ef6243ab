"""User 360: find a user by id, and see everything about them on one page - traits grouped by
what they tell, tags, segments, scores with their reasons, interest and activity charts,
recommendations with their reasons, and the event timeline a page at a time.

Everything is read through the stage facades: ``ws.profiles`` (traits, tags, search, weekly
activity), ``ws.segments.of_user``, ``ws.predict.of_user``, ``ws.ingest.timeline``,
``ws.recs`` (catalog names) and the server's one recommender (``state.recs``, scoring from the
live interactions, as ``GET /v1/users/{id}/recommendations`` does).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jingzhun.api.deps import get_state
from jingzhun.api.problems import Problem
from jingzhun.api.schemas import decode_cursor, encode_cursor
from jingzhun.errors import InputError, NotFoundError
from jingzhun.report.html import figure
from jingzhun.report.i18n import Translator, register
from jingzhun.segment.read import label_text
from jingzhun.web.common import PAGE, fmt, lang_of, number, problem, render, signed_in, when

router = APIRouter(include_in_schema=False)

#: Users listed by a search.
FOUND = 20
#: Recommendations shown on a user's page.
RECS = 10
#: The longest id a search or an address takes (the API's limit).
MAX_ID = 256

# -- what a trait is called, and how its value is written -----------------------------------------

#: Traits by group, in the order shown: name -> (English, Chinese, kind). The kind says how to
#: write the value (see :func:`trait_value`).
GROUPS: dict[str, dict[str, tuple[str, str, str]]] = {
    "value": {
        "frequency": ("Orders", "订单数", "int"),
        "monetary": ("Spend, net of refunds", "消费额（扣除退款）", "money"),
        "aov": ("Average order value", "客单价", "money"),
        "recency_days": ("Days since the last order", "距上次下单天数", "int"),
        "first_order_at": ("First order", "首次下单", "time"),
        "last_order_at": ("Latest order", "最近下单", "time"),
        "order_lines": ("Order lines", "订单行数", "int"),
        "units": ("Units bought", "购买件数", "int"),
        "refunded": ("Refunded", "退款金额", "money"),
        "refund_rate": ("Refund rate", "退款率", "pct"),
        "score": ("Profile score P(u)", "画像综合分 P(u)", "ratio"),
    },
    "activity": {
        "last_seen": ("Last seen", "最近出现", "time"),
        "days_since_seen": ("Days since last seen", "距最近活跃天数", "int"),
        "first_seen": ("First seen", "首次出现", "time"),
        "created_at": ("Signed up", "注册时间", "time"),
        "tenure_days": ("Days known", "已知天数", "int"),
        "active_days": ("Active days", "活跃天数", "int"),
        "events": ("Events", "事件数", "int"),
        "sessions": ("Visits (page views)", "访问次数（页面浏览）", "int"),
        "preferred_channel": ("Preferred channel", "常用渠道", "channel"),
        "preferred_weekday": ("Most active weekday", "最活跃的星期", "weekday"),
        "preferred_hour": ("Most active hour (UTC)", "最活跃时段（UTC）", "hour"),
    },
    "funnel": {
        "n_product_viewed": ("Product views", "商品浏览次数", "int"),
        "n_product_added": ("Cart adds", "加购次数", "int"),
        "n_checkout_started": ("Checkouts started", "开始结账次数", "int"),
        "n_order_completed": ("Order lines (events)", "下单行数（事件）", "int"),
        "view_to_cart": ("Cart adds per product view", "加购率（每次浏览）", "pct"),
        "cart_to_purchase": ("Order lines per cart add", "购买率（每次加购）", "pct"),
        "n_product_removed": ("Removed from the cart", "移出购物车次数", "int"),
        "n_cart_viewed": ("Cart views", "查看购物车次数", "int"),
        "n_order_refunded": ("Refunds", "退款次数", "int"),
    },
    "interests": {
        "top_categories": ("Top categories", "偏好品类", "list"),
        "top_brands": ("Top brands", "偏好品牌", "list"),
        "last_items": ("Latest items", "最近互动的商品", "items"),
        "distinct_items": ("Distinct items", "互动过的商品数", "int"),
        "n_product_added_to_wishlist": ("Wishlist adds", "加入心愿单次数", "int"),
        "n_products_searched": ("Searches", "搜索次数", "int"),
        "n_product_list_viewed": ("Product lists viewed", "浏览商品列表次数", "int"),
        "n_product_clicked": ("Products clicked", "点击商品次数", "int"),
    },
    "price": {
        "discount_share": ("Order lines bought on discount", "折扣购买占比", "pct"),
        "price_percentile": (
            "Price level within the category (0 cheapest, 1 dearest)",
            "品类内价格水平（0 最便宜，1 最贵）",
            "ratio",
        ),
        "n_coupon_applied": ("Coupons applied", "使用优惠券次数", "int"),
    },
    "messages": {
        "n_message_sent": ("Messages sent", "已发送消息", "int"),
        "n_email_delivered": ("Emails delivered", "邮件送达", "int"),
        "n_email_opened": ("Emails opened", "邮件打开", "int"),
        "n_email_clicked": ("Emails clicked", "邮件点击", "int"),
        "email_open_rate": ("Email open rate", "邮件打开率", "pct"),
        "n_campaign_converted": ("Campaign conversions", "营销活动转化", "int"),
        "n_signed_up": ("Sign-ups", "注册次数", "int"),
        "n_identify": ("Identified", "身份识别次数", "int"),
    },
}
GROUP_NAMES = {
    "value": ("Value (RFM)", "价值（RFM）"),
    "activity": ("Activity", "活跃度"),
    "funnel": ("Shopping funnel", "购物漏斗"),
    "interests": ("Interests", "兴趣偏好"),
    "price": ("Price sensitivity", "价格敏感度"),
    "messages": ("Messages", "营销触达"),
    "other": ("Other traits", "其他特征"),
}
#: Profile columns that are not traits to list (the key, the build time, the affinity map,
#: which the interest chart draws).
NOT_LISTED = ("user_id", "as_of", "category_affinity", "n_page_viewed")  # = sessions
#: Features the models compute from traits (reasons of a score name them).
FEATURES = {
    "affinity_concentration": ("Share of the top category in their interest", "首选品类的兴趣占比"),
    "recency_share": ("Time since the last order, as a share of tenure", "距上次下单占用户时长的比例"),
    "views_per_session": ("Product views per visit", "每次访问浏览商品数"),
    "orders_per_month": ("Orders a month", "月均订单数"),
    "sessions_per_month": ("Visits a month", "月均访问次数"),
    "hour_sin": ("Time of day", "活跃时段"),
    "hour_cos": ("Time of day", "活跃时段"),
}  # fmt: skip
#: Score kinds: label key (or words) and how the value is written.
SCORES: dict[str, tuple[str, str]] = {
    "propensity": ("pred_target_propensity", "pct"),
    "churn": ("web_users_score_churn", "pct"),
    "uplift": ("web_users_score_uplift", "pp"),
    "clv": ("pred_target_clv", "money"),
    "expected_orders": ("web_users_score_expected_orders", "float"),
    "p_alive": ("web_users_score_p_alive", "pct"),
}
#: Tag names.
TAGS = {
    "rfm_segment": ("RFM segment", "RFM 分群"),
    "rfm_score": ("RFM score", "RFM 得分"),
    "rfm_r": ("Recency score (R)", "最近购买得分（R）"),
    "rfm_f": ("Frequency score (F)", "购买频率得分（F）"),
    "rfm_m": ("Spend score (M)", "消费金额得分（M）"),
    "spend_band": ("Spend band", "消费档位"),
    "churn_risk": ("Churn risk", "流失风险"),
    "likely_to_buy": ("Likely to buy", "购买可能性"),
    "persuadable": ("Persuadable by a message", "营销敏感度"),
    "high_value": ("High value", "高价值"),
}
#: Tag values written in words.
TAG_VALUES = {
    "low": ("low", "低"),
    "medium": ("medium", "中"),
    "mid": ("mid", "中"),
    "high": ("high", "高"),
    "top": ("top", "最高"),
    "true": ("yes", "是"),
    "false": ("no", "否"),
}
#: Event names in words (an event not listed is shown by its name).
EVENTS = {
    "page_viewed": ("Viewed a page", "浏览页面"),
    "screen_viewed": ("Viewed a screen", "浏览屏幕"),
    "products_searched": ("Searched", "搜索商品"),
    "product_list_viewed": ("Viewed a product list", "浏览商品列表"),
    "product_list_filtered": ("Filtered a product list", "筛选商品列表"),
    "promotion_viewed": ("Saw a promotion", "看到促销"),
    "promotion_clicked": ("Clicked a promotion", "点击促销"),
    "product_clicked": ("Clicked a product", "点击商品"),
    "product_viewed": ("Viewed a product", "浏览商品"),
    "product_shared": ("Shared a product", "分享商品"),
    "product_reviewed": ("Reviewed a product", "评价商品"),
    "product_added_to_wishlist": ("Added to the wishlist", "加入心愿单"),
    "product_removed_from_wishlist": ("Removed from the wishlist", "移出心愿单"),
    "wishlist_product_added_to_cart": ("Wishlist item to cart", "心愿单商品加购"),
    "product_added": ("Added to cart", "加入购物车"),
    "product_removed": ("Removed from cart", "移出购物车"),
    "cart_viewed": ("Viewed the cart", "查看购物车"),
    "cart_shared": ("Shared the cart", "分享购物车"),
    "coupon_entered": ("Entered a coupon", "输入优惠券"),
    "coupon_applied": ("Applied a coupon", "使用优惠券"),
    "coupon_denied": ("Coupon refused", "优惠券被拒"),
    "coupon_removed": ("Removed a coupon", "移除优惠券"),
    "checkout_started": ("Started checkout", "开始结账"),
    "checkout_step_viewed": ("Checkout step viewed", "查看结账步骤"),
    "checkout_step_completed": ("Checkout step done", "完成结账步骤"),
    "payment_info_entered": ("Entered payment", "填写支付信息"),
    "order_completed": ("Ordered", "下单"),
    "order_updated": ("Order changed", "修改订单"),
    "order_refunded": ("Refunded", "退款"),
    "order_cancelled": ("Cancelled an order", "取消订单"),
    "signed_up": ("Signed up", "注册"),
    "identify": ("Identified", "身份识别"),
    "alias": ("Linked an alias", "关联别名"),
    "group": ("Joined a group", "加入群组"),
    "message_sent": ("Message sent", "发送消息"),
    "email_delivered": ("Email delivered", "邮件送达"),
    "email_opened": ("Opened an email", "打开邮件"),
    "email_clicked": ("Clicked an email", "点击邮件"),
    "email_bounced": ("Email bounced", "邮件退回"),
    "email_marked_as_spam": ("Marked as spam", "标记为垃圾邮件"),
    "unsubscribed": ("Unsubscribed", "退订"),
    "campaign_converted": ("Converted by a campaign", "营销活动转化"),
}
#: The activity chart's groups of events (the rest is "other").
ACTIVITY = {
    "browse": {
        "page_viewed", "screen_viewed", "products_searched", "product_list_viewed",
        "product_list_filtered", "product_clicked", "product_viewed", "promotion_viewed",
        "promotion_clicked", "product_shared", "product_reviewed",
    },
    "cart": {
        "product_added", "product_removed", "product_added_to_wishlist", "cart_viewed",
        "product_removed_from_wishlist", "wishlist_product_added_to_cart", "checkout_started",
        "checkout_step_viewed", "checkout_step_completed", "payment_info_entered",
        "coupon_entered", "coupon_applied", "coupon_denied", "coupon_removed",
    },
    "order": {"order_completed", "order_updated", "order_refunded", "order_cancelled"},
    "message": {
        "message_sent", "email_delivered", "email_opened", "email_clicked", "email_bounced",
        "email_marked_as_spam", "unsubscribed", "campaign_converted",
    },
}  # fmt: skip
#: Channels in words (another is shown as it is).
CHANNELS = {
    "web": ("web", "网站"),
    "app": ("app", "应用"),
    "email": ("email", "邮件"),
    "sms": ("SMS", "短信"),
    "push": ("push", "推送"),
    "wechat": ("WeChat", "微信"),
    "store": ("store", "门店"),
    "webhook": ("webhook", "Webhook"),
}
CONSENT_WORDS = {
    "purpose_marketing": ("Marketing", "营销"),
    "purpose_analytics": ("Analytics", "分析"),
    "purpose_personalization": ("Personalization", "个性化"),
    "status_GRANTED": ("granted", "已同意"),
    "status_DENIED": ("denied", "已拒绝"),
    "status_REVOKED": ("revoked", "已撤回"),
    "channel_any": ("every channel", "所有渠道"),
    "channel_ads": ("ads", "广告"),
}
WEEKDAYS = (
    ("Monday", "星期一"), ("Tuesday", "星期二"), ("Wednesday", "星期三"), ("Thursday", "星期四"),
    ("Friday", "星期五"), ("Saturday", "星期六"), ("Sunday", "星期日"),
)  # fmt: skip

register(
    {f"web_users_trait_{n}": (en, zh) for g in GROUPS.values() for n, (en, zh, _) in g.items()}
    | {f"web_users_group_{g}": words for g, words in GROUP_NAMES.items()}
    | {f"web_users_feature_{n}": words for n, words in FEATURES.items()}
    | {f"web_users_tag_{n}": words for n, words in TAGS.items()}
    | {f"web_users_tagvalue_{n}": words for n, words in TAG_VALUES.items()}
    | {f"web_users_event_{n}": words for n, words in EVENTS.items()}
    | {f"web_users_channel_{n}": words for n, words in CHANNELS.items()}
    | {f"web_users_weekday_{i}": words for i, words in enumerate(WEEKDAYS)}
    | {f"web_users_consent_{n}": words for n, words in CONSENT_WORDS.items()}
    | {
        "web_users_find": ("Find a user", "查找用户"),
        "web_users_find_label": ("User id", "用户 ID"),
        "web_users_find_help": (
            "Type a user id, or its beginning to list the users it starts; a device id finds "
            "the user it was linked to.",
            "输入用户 ID，或输入开头部分列出匹配的用户；输入设备 ID 会找到其所属用户。",
        ),
        "web_users_find_button": ("Search", "搜索"),
        "web_users_found": ("Users whose id starts with “{value}”", "ID 以“{value}”开头的用户"),
        "web_users_found_none": (
            "No profiled user's id starts with “{value}”.",
            "没有 ID 以“{value}”开头的已建画像用户。",
        ),
        "web_users_found_more": (
            "More users match: type more of the id.",
            "匹配的用户更多，请输入更完整的 ID。",
        ),
        "web_users_top": ("Biggest spenders", "消费最高的用户"),
        "web_users_too_long": (
            "User id: at most {value} characters.",
            "用户 ID：最多 {value} 个字符。",
        ),
        "web_users_no_profiles": (
            "No profiles yet: build them (jingzhun profile build) to search users.",
            "还没有用户画像：请先构建（jingzhun profile build）再搜索用户。",
        ),
        "web_users_no_user": (
            "There is no user {value!r}: search for one.",
            "没有用户 {value!r}，请重新搜索。",
        ),
        "web_users_heading": ("User {value}", "用户 {value}"),
        "web_users_as_of": ("Profile as of {value}", "画像计算时间：{value}"),
        "web_users_no_profile": (
            "No profile yet: this user arrived after the last profile build (jingzhun profile "
            "build); their events and recommendations are below.",
            "暂无画像：该用户在最近一次画像构建之后才出现（jingzhun profile build）；"
            "下方是其事件和推荐。",
        ),
        "web_users_segments": ("Segments", "所属分群"),
        "web_users_run": ("Segmentation", "分群方案"),
        "web_users_no_segments": ("In no segment yet.", "尚未归入任何分群。"),
        "web_users_no_tags": ("No tags.", "没有标签。"),
        "web_users_consent": ("Consent", "授权同意"),
        "web_users_consent_none": (
            "None stated: marketing counts as {value} (the configured default).",
            "未表示：营销按默认设置视为{value}。",
        ),
        "web_users_consent_since": ("since {value}", "自 {value} 起"),
        "web_users_scores": ("Scores", "模型评分"),
        "web_users_score": ("Score", "评分"),
        "web_users_score_churn": ("Churn risk", "流失风险"),
        "web_users_score_uplift": (
            "Uplift: extra chance to buy when messaged",
            "增益：触达后额外的购买概率",
        ),
        "web_users_score_expected_orders": ("Expected orders", "预期订单数"),
        "web_users_score_p_alive": ("Chance still active", "仍为活跃客户的概率"),
        "web_users_percentile": ("Higher than", "高于"),
        "web_users_percentile_of": ("{value} of users", "{value} 的用户"),
        "web_users_reasons": ("Why", "原因"),
        "web_users_no_reasons": ("–", "–"),
        "web_users_no_scores": (
            "No scores yet (jingzhun predict score).",
            "还没有评分（jingzhun predict score）。",
        ),
        "web_users_traits": ("Traits", "用户特征"),
        "web_users_interest_chart": ("Interest by category", "各品类兴趣"),
        "web_users_interest_axis": ("Share of the user's interest (%)", "占该用户兴趣的比例（%）"),
        "web_users_category": ("Category", "品类"),
        "web_users_activity_chart": ("Events per week", "每周事件数"),
        "web_users_week": ("Week", "周"),
        "web_users_events_n": ("Events", "事件数"),
        "web_users_kind_browse": ("Browsing", "浏览"),
        "web_users_kind_cart": ("Cart and checkout", "加购与结账"),
        "web_users_kind_order": ("Orders", "订单"),
        "web_users_kind_message": ("Messages", "营销消息"),
        "web_users_kind_other": ("Other", "其他"),
        "web_users_recs": ("Recommended for this user", "为该用户推荐"),
        "web_users_recs_model": ("Model {value}", "模型 {value}"),
        "web_users_cold": (
            "Cold start: the model has no history of this user, so the list is popular items.",
            "冷启动：模型没有该用户的历史，推荐的是热门商品。",
        ),
        "web_users_explore": ("Explore these recommendations", "在推荐探索中查看"),
        "web_users_no_recs": (
            "No recommender trained yet (jingzhun recommend train).",
            "还没有训练推荐模型（jingzhun recommend train）。",
        ),
        "web_users_rank": ("#", "排名"),
        "web_users_item": ("Item", "商品"),
        "web_users_score_col": ("Score", "得分"),
        "web_users_timeline": ("Events, newest first", "行为时间线（最新在前）"),
        "web_users_time": ("Time (UTC)", "时间（UTC）"),
        "web_users_order": ("Order", "订单"),
        "web_users_amount": ("Amount", "金额"),
        "web_users_channel": ("Channel", "渠道"),
        "web_users_campaign": ("Campaign", "营销活动"),
        "web_users_device": ("as device {value}", "设备 {value}"),
        "web_users_no_events": ("No events.", "没有事件。"),
        "web_users_newest": ("Newest", "最新"),
        "web_users_newer": ("Newer", "较新"),
        "web_users_older": ("Older", "较早"),
        "web_users_page": ("Page {value}", "第 {value} 页"),
    }
)

# -- formatting -------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def trait_label(t: Translator, name: str) -> str:
    """A trait's or a model feature's name in words, else the column name as it is."""
    for key in (f"web_users_trait_{name}", f"web_users_feature_{name}"):
        words = t(key)
        if words != key:
            return words
    if name.startswith("n_") and name[2:] in EVENTS:
        return f"{t('web_users_event_' + name[2:])} ({t('web_users_events_n')})"
    return name


def trait_value(value: Any, kind: str, lang: str, titles: dict[str, str] | None = None) -> str:
    """A trait's value as the page writes it (``kind`` from :data:`GROUPS`)."""
    if _missing(value) or (isinstance(value, (list, tuple, dict)) and not value):
        return "–"
    if kind == "time":
        return when(pd.Timestamp(value).to_pydatetime(), lang)
    if kind in ("int", "money", "pct", "ratio", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        return fmt(float(value), kind, lang)
    if kind == "channel":
        return channel_words(Translator(lang), str(value))
    if kind == "weekday" and isinstance(value, (int, float)) and 0 <= int(value) <= 6:
        return WEEKDAYS[int(value)][lang == "zh"]
    if kind == "hour" and isinstance(value, (int, float)):
        return f"{int(value):02d}:00–{int(value):02d}:59"
    if isinstance(value, (list, tuple)):
        names = [(titles or {}).get(str(v)) or str(v) for v in value] if kind == "items" else value
        return ("、" if lang == "zh" else "; " if kind == "items" else ", ").join(map(str, names))
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def score_value(value: Any, kind: str, lang: str) -> str:
    """A score as the page writes it: a probability in per cent, uplift in percentage points."""
    if _missing(value):
        return "–"
    if kind == "pp":
        return f"{float(value) * 100:+.1f} " + ("个百分点" if lang == "zh" else "pp")
    return fmt(float(value), kind, lang)


def tag_words(t: Translator, tag: str, value: str) -> tuple[str, str]:
    """A tag and its value in words: RFM segments by their name in the language, low / medium
    / high and yes / no translated, anything else as it is."""
    key = f"web_users_tag_{tag}"
    name = t(key) if t(key) != key else tag
    if tag == "rfm_segment":
        return name, label_text(str(value), t.lang)
    vkey = f"web_users_tagvalue_{str(value).lower()}"
    return name, t(vkey) if t(vkey) != vkey else str(value)


def channel_words(t: Translator, channel: str | None) -> str:
    if not channel:
        return ""
    key = f"web_users_channel_{channel}"
    return channel if t(key) == key else t(key)


def event_words(t: Translator, event: str) -> str:
    key = f"web_users_event_{event}"
    words = t(key)
    return event if words == key else words


# -- pages ------------------------------------------------------------------------------------


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, q: str | None = None) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    query = (q or "").strip()
    if len(query) > MAX_ID:
        return render(request, "users.html", session, status=422, q=query[:MAX_ID],
                      error=("web_users_too_long", MAX_ID), found=None, top=None)  # fmt: skip
    try:
        if query:
            if _exists(ws, query):
                return RedirectResponse(f"/users/{quote(query, safe='')}", status_code=303)
            if "@" in query:
                # An address: found through the vault's blind index (nothing decrypted), the
                # look-up audited under the signed-in key's name.
                state = get_state(request)
                users = state.run_write(
                    lambda w: w.privacy.find(email=query, actor=f"web:{session.name}")
                ).result(timeout=60)
                if len(users) == 1:
                    return RedirectResponse(f"/users/{quote(users[0], safe='')}", status_code=303)
            found = ws.profiles.search(query, limit=FOUND + 1)
            top = None
        else:
            found, top = None, ws.profiles.search("", limit=FOUND, by="monetary")
    except NotFoundError:
        return render(request, "users.html", session, q=query, error=("web_users_no_profiles",
                      None), found=None, top=None)  # fmt: skip
    rows = None if found is None else _found_rows(found.iloc[:FOUND], lang_of(request))
    return render(
        request,
        "users.html",
        session,
        q=query,
        error=None,
        found=rows,
        more=found is not None and len(found) > FOUND,
        top=None if top is None else _found_rows(top, lang_of(request)),
    )


def _exists(ws: Any, user_id: str) -> bool:
    """Whether ``user_id`` is a user (or device) to show a page for."""
    try:
        ws.profiles.user(user_id, events=0)
        return True
    except NotFoundError:
        pass
    try:
        ws.ingest.timeline(user_id, limit=1)
        return True
    except NotFoundError:
        return False


def _found_rows(frame: pd.DataFrame, lang: str) -> list[dict[str, Any]]:
    return [
        {
            "user_id": r["user_id"],
            "path": quote(r["user_id"], safe=""),
            "orders": fmt(float(r["frequency"]), "int", lang),
            "spend": fmt(float(r["monetary"]), "money", lang),
            "last_seen": trait_value(r["last_seen"], "time", lang),
            "segment": "" if _missing(r["rfm_segment"]) else label_text(r["rfm_segment"], lang),
        }
        for r in frame.to_dict("records")
    ]


@router.get("/users/{user_id:path}", response_class=HTMLResponse)
def user_page(
    request: Request, user_id: str, before: str | None = None, page: str | None = None
) -> Response:
    session = signed_in(request)
    state = get_state(request)
    ws = state.readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    if len(user_id) > MAX_ID:
        return _no_user(request, session, user_id)
    try:
        profile = ws.profiles.user(user_id, events=0)
        uid, traits, tags = profile.user_id, profile.traits, profile.tags
        devices = profile.anonymous_ids
    except NotFoundError:
        profile, uid, traits, tags, devices = None, user_id, {}, {}, []
    # the timeline: a page of events (PAGE + 1 tells whether there is an older page)
    at = number(page, 1, hi=200)  # 10,000 events back: the newer links re-read the pages before
    cursor = _cursor(before)
    if cursor is None:
        at = 1
    elif at == 1:  # a cursor is never the first page's
        at = 2
    try:
        rows = ws.ingest.timeline(uid, limit=PAGE + 1, before=cursor)
    except NotFoundError:
        return _no_user(request, session, user_id)
    older = None
    if len(rows) > PAGE:
        last = rows[PAGE - 1]
        older = encode_cursor("events", last["ts"], last["event_id"])
    rows = rows[:PAGE]
    newer = _newer(ws, uid, at) if at > 1 else None
    scores = ws.predict.of_user(uid)
    recs = _recommendations(state, uid, lang)
    ids = {str(i) for i in traits.get("last_items") or []}
    ids |= {r["item_id"] for r in rows if r.get("item_id")}
    ids |= {i["item_id"] for i in (recs or {}).get("items", [])}
    items = ws.recs.items(sorted(ids))
    titles = {k: v["title"] for k, v in items.items() if v["title"]}
    if recs:
        for i in recs["items"]:
            i["category"] = items.get(i["item_id"], {}).get("category")
    # both charts as tall as the interest chart needs (they sit side by side)
    affinity = traits.get("category_affinity") or {}
    height = max(300, 34 * min(len(affinity), 12) + 120)
    charts = [
        c for c in (_interest_chart(affinity, t, height), _activity_chart(ws, uid, t, height)) if c
    ]
    return render(
        request,
        "user.html",
        session,
        uid=uid,
        uid_path=quote(uid, safe=""),
        profile=profile is not None,
        as_of=trait_value(traits.get("as_of"), "time", lang),
        devices=devices,
        kpis=_kpis(traits, tags, lang, t),
        groups=_groups(traits, lang, titles, t),
        tags=[tag_words(t, k, v) for k, v in sorted(tags.items())],
        segments=[s.to_dict() for s in ws.segments.of_user(uid, lang=lang)],
        consents=_consents(ws, uid, lang, t),
        consent_default=t(
            f"web_users_consent_status_{ws.settings.privacy.default_marketing_consent}"
        ),
        scores=_scores(scores, lang, t),
        charts=charts,
        recs=recs,
        events=[_event_row(r, titles, lang, t) for r in rows],
        page=at,
        older=older,
        newer=newer,
    )


def _consents(ws: Any, uid: str, lang: str, t: Translator) -> list[dict[str, str]]:
    """The consents in force, in words: purpose, channel, status, since when, from where."""

    def word(kind: str, value: str, fallback: dict[str, tuple[str, str]]) -> str:
        key = f"{kind}_{value}"
        if key in CONSENT_WORDS:
            return t(f"web_users_consent_{key}")
        return t(f"web_users_channel_{value}") if value in fallback else value

    return [
        {
            "purpose": word("purpose", r["purpose"], {}),
            "channel": word("channel", r["channel"], CHANNELS),
            "status": word("status", r["status"], {}),
            "granted": r["status"] == "GRANTED",
            "since": trait_value(r["ts"], "time", lang),
            "source": str(r["source"]).split(":", 1)[0],
        }
        for r in ws.privacy.consents(uid).to_dict("records")
    ]


def _no_user(request: Request, session: Any, user_id: str) -> HTMLResponse:
    shown = user_id if len(user_id) <= 80 else user_id[:80] + "…"
    return problem(request, session, 404, "web_users_no_user", value=shown, back="/users")


def _cursor(before: str | None) -> tuple[datetime, str] | None:
    """The ``(ts, event_id)`` a timeline page starts after; None (the newest page) for no or a
    tampered cursor."""
    if not before:
        return None
    try:
        ts, event_id = decode_cursor(before, "events", (datetime, str))
    except Problem:
        return None
    return ts, event_id


def _newer(ws: Any, uid: str, at: int) -> str:
    """The link's query to the page before page ``at`` (the cursor after its page before)."""
    if at <= 2:
        return ""
    rows = ws.ingest.timeline(uid, limit=(at - 2) * PAGE)
    if not rows:
        return ""
    last = rows[-1]
    return f"?before={encode_cursor('events', last['ts'], last['event_id'])}&page={at - 1}"


def _recommendations(state: Any, uid: str, lang: str) -> dict[str, Any] | None:
    """The server's recommender's list for the user, from their live history (None without a
    trained recommender)."""
    try:
        history = state.live.interactions(uid)
        return state.recs.for_user(uid, RECS, lang=lang, history=history).to_dict()
    except NotFoundError:
        return None
    except InputError:  # live profiles without interactions: the store's history
        try:
            return state.recs.for_user(uid, RECS, lang=lang).to_dict()
        except NotFoundError:
            return None


def _kpis(traits: dict[str, Any], tags: dict[str, str], lang: str, t: Translator) -> list:
    if not traits:
        return []
    out = [
        (trait_label(t, n), trait_value(traits.get(n), k, lang))
        for n, k in (
            ("frequency", "int"),
            ("monetary", "money"),
            ("aov", "money"),
            ("recency_days", "int"),
            ("days_since_seen", "int"),
        )
    ]
    if "rfm_segment" in tags:
        out.append(tag_words(t, "rfm_segment", tags["rfm_segment"]))
    return out


def _groups(traits: dict[str, Any], lang: str, titles: dict[str, str], t: Translator) -> list:
    """The traits grouped as :data:`GROUPS` says, then any other column (custom traits)."""
    if not traits:
        return []
    out, seen = [], set(NOT_LISTED)
    for group, names in GROUPS.items():
        rows = [
            (words[0] if lang == "en" else words[1], trait_value(traits[n], words[2], lang, titles))
            for n, words in names.items()
            if n in traits
        ]
        seen |= set(names)
        out.append((t(f"web_users_group_{group}"), rows))
    other = [
        (trait_label(t, n), trait_value(v, "float" if isinstance(v, float) else "", lang))
        for n, v in traits.items()
        if n not in seen
    ]
    if other:
        out.append((t("web_users_group_other"), other))
    return [g for g in out if g[1]]


def _scores(frame: pd.DataFrame, lang: str, t: Translator) -> list[dict[str, Any]]:
    out = []
    for r in frame.to_dict("records"):
        key, kind = SCORES.get(r["score"], (r["score"], "float"))
        reasons = [
            f"{trait_label(t, x['feature'])} = {_number(x['value'], lang)}"
            for x in r["reasons"] or []
        ]
        pct = r["percentile"]
        out.append(
            {
                "name": t(key),
                "value": score_value(r["value"], kind, lang),
                "percentile": None if _missing(pct) else fmt(float(pct), "pct", lang),
                "reasons": reasons,
                "model": r["model_id"],
            }
        )
    return out


def _number(value: Any, lang: str) -> str:
    if isinstance(value, float) and value.is_integer():
        return fmt(value, "int", lang)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _event_row(
    r: dict[str, Any], titles: dict[str, str], lang: str, t: Translator
) -> dict[str, Any]:
    item = r.get("item_id")
    return {
        "when": when(r["ts"], lang),
        "event": event_words(t, r["event"]),
        "item": (titles.get(item) or item) if item else "",
        "item_id": item if item and titles.get(item) else "",
        "order": r.get("order_id") or "",
        "amount": "" if _missing(r.get("revenue")) else fmt(float(r["revenue"]), "money", lang),
        "channel": channel_words(t, r.get("channel")),
        "campaign": r.get("campaign_id") or "",
        "device": r.get("anonymous_id") if not r.get("user_id") else "",
    }


# -- charts -----------------------------------------------------------------------------------


def _interest_chart(affinity: Any, t: Translator, height: int) -> str | None:
    """The user's interest (category affinity, shares summing to 1) by category."""
    import plotly.graph_objects as go

    if not isinstance(affinity, dict) or not affinity:
        return None
    pairs = sorted(affinity.items(), key=lambda kv: kv[1])[-12:]  # largest on top
    fig = go.Figure(
        go.Bar(
            x=[v * 100 for _, v in pairs],
            y=[str(k) for k, _ in pairs],
            orientation="h",
            text=[f"{v * 100:.0f}%" for _, v in pairs],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title=t("web_users_interest_chart"),
        xaxis_title=t("web_users_interest_axis"),
        yaxis_title=t("web_users_category"),
        showlegend=False,
    )
    fig.update_xaxes(rangemode="tozero", ticksuffix="%")
    return figure(fig, height=height)


def _activity_chart(ws: Any, uid: str, t: Translator, height: int) -> str | None:
    """The user's events per week, stacked by kind (browsing, cart, orders, messages)."""
    import plotly.graph_objects as go

    weekly = ws.profiles.user_activity(uid)
    if weekly.empty:
        return None
    kind_of = {e: k for k, events in ACTIVITY.items() for e in events}
    weekly = weekly.assign(kind=weekly["event"].map(kind_of).fillna("other"))
    table = weekly.pivot_table(index="week", columns="kind", values="n", aggfunc="sum").fillna(0)
    weeks = pd.date_range(table.index.min(), table.index.max(), freq="7D")
    table = table.reindex(weeks, fill_value=0)
    fig = go.Figure()
    for kind in (*ACTIVITY, "other"):
        if kind in table:
            fig.add_trace(go.Bar(x=table.index, y=table[kind], name=t(f"web_users_kind_{kind}")))
    fig.update_layout(
        barmode="stack",
        title=t("web_users_activity_chart"),
        xaxis_title=t("web_users_week"),
        yaxis_title=t("web_users_events_n"),
    )
    # Plotly's own date labels are English; Chinese dates are written out.
    fig.update_xaxes(tickformat="%Y年%m月%d日" if t.lang == "zh" else "%b %d, %Y")
    return figure(fig, height=height)


__all__ = ["event_words", "router", "tag_words", "trait_label", "trait_value"]
