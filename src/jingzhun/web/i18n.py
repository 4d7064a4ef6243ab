"""The dashboard's labels, in the report's one string table (English, 中文), and the language a
request is shown in: the ``jz_lang`` cookie, else the browser's ``Accept-Language``."""

from __future__ import annotations

from jingzhun.report.i18n import LANGS, register

LANG_COOKIE = "jz_lang"

register(
    {
        "dash_title": ("jingzhun dashboard", "精准营销工作台"),
        "sign_in": ("Sign in", "登录"),
        "sign_out": ("Sign out", "退出"),
        "api_key": ("API key", "API 密钥"),
        "api_key_help": (
            "A key of read scope or more (jingzhun apikey create --scope read --name NAME).",
            "需要 read 或更高权限的密钥（jingzhun apikey create --scope read --name 名称）。",
        ),
        "bad_key": ("That key is not valid or has been revoked.", "密钥无效或已被撤销。"),
        "scope_too_small": (
            "That key may only send events; the dashboard needs read scope or more.",
            "该密钥只能上报事件；工作台需要 read 或更高权限。",
        ),
        "web_nav_users": ("User 360", "用户360"),
        "web_nav_explore": ("Recommendations", "推荐探索"),
        "web_nav_campaigns": ("Campaigns", "营销活动"),
        "web_nav_models": ("Models", "模型"),
        "web_nav_jobs": ("Jobs", "任务"),
        "signed_in_as": ("Signed in as", "当前用户"),
        "language": ("Language", "语言"),
        "kpis": ("Key figures", "核心指标"),
        "last_days": ("Last {n} days", "最近 {n} 天"),
        "vs_previous": ("vs. previous {n} days", "对比前 {n} 天"),
        "avg_daily_active": ("Active visitors a day", "日均活跃访客"),
        "aov": ("Average order value", "客单价"),
        "daily_conversion": ("Share of daily visitors who bought", "日访客购买转化率"),
        "daily_trends": ("Daily active visitors and revenue", "每日活跃访客与销售额"),
        "visitors": ("Visitors", "访客"),
        "web_funnel": ("Funnel", "转化漏斗"),
        "web_as_of_build": (
            "Daily figures are live; the funnel and cohorts are as of the last profile build ({when}).",
            "每日数据为实时；漏斗与留存截至最近一次画像构建（{when}）。",
        ),
        "funnel_step": ("Step", "步骤"),
        "share_of_first": ("Share of the first step", "占首步比例"),
        "web_cohorts": ("Monthly retention by first-order cohort", "按首单月份的月留存"),
        "web_cohort": ("First order month", "首单月份"),
        "months_after": ("Months after the first order", "首单后月数"),
        "retained": ("Retained", "留存率"),
        "ingest_health": ("Ingest health", "数据接入状况"),
        "open_quarantine": ("Open in quarantine", "查看隔离区"),
        "not_found": ("Not found", "未找到"),
        "back": ("Go back", "返回"),
        "web_refused": ("Refused", "操作被拒绝"),
        "needs_admin": (
            "This action needs an admin key; sign in with one (jingzhun apikey create --scope admin).",
            "此操作需要 admin 权限的密钥；请用这样的密钥登录（jingzhun apikey create --scope admin）。",
        ),
        "no_events": (
            "The store has no events yet: ingest some first (jingzhun ingest events FILE).",
            "数据库中还没有事件：请先导入（jingzhun ingest events 文件）。",
        ),
        "web_too_many": ("Too many requests", "请求过于频繁"),
        "web_slow_down": (
            "Too many requests in a short time; nothing was done. Wait {value} seconds and try again.",
            "短时间内请求过多，本次请求未执行。请等待 {value} 秒后再试。",
        ),
        "forbidden": (
            "This action needs a signed form; reload the page.",
            "此操作需要有效的表单令牌，请刷新页面。",
        ),
        "no_such_run": (
            "There is no segment run {value!r}; pick one from the list.",
            "没有名为 {value!r} 的分群运行，请从列表中选择。",
        ),
        "no_runs": (
            "No segments yet: run one (jingzhun segment run --method rfm).",
            "还没有分群：请先运行（jingzhun segment run --method rfm）。",
        ),
        "runs": ("Runs", "分群运行"),
        "created": ("Created", "创建时间"),
        "active": ("Active", "启用"),
        "members": ("Members", "成员"),
        "all_segments": ("All segments", "全部分群"),
        "download_csv": ("Download all as CSV", "下载全部（CSV）"),
        "page_of": ("Page {page} of {pages}", "第 {page} / {pages} 页"),
        "previous": ("Previous", "上一页"),
        "next": ("Next", "下一页"),
        "user_id": ("User", "用户"),
        "product_viewed": ("Viewed a product", "浏览商品"),
        "product_added": ("Added to cart", "加入购物车"),
        "checkout_started": ("Started checkout", "开始结账"),
        "order_completed": ("Ordered", "下单"),
    }
)


def pick_lang(cookie: str | None, accept_language: str | None) -> str:
    """The language to show: the cookie's choice, else the first of the browser's we have."""
    if cookie in LANGS:
        return cookie  # type: ignore[return-value]
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


__all__ = ["LANG_COOKIE", "pick_lang"]
