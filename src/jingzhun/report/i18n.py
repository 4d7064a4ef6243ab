"""Report strings in English and Chinese. A missing translation falls back to English."""

from __future__ import annotations

LANGS = ("en", "zh")

_STRINGS: dict[str, tuple[str, str]] = {
    "report_title": ("jingzhun report", "精准营销数据报告"),
    "generated": ("Generated", "生成时间"),
    "store": ("Store", "数据库"),
    "contents": ("Contents", "目录"),
    # overview
    "overview": ("Overview", "概览"),
    "events": ("Events", "事件"),
    "users": ("Users", "用户"),
    "items": ("Items", "商品"),
    "orders": ("Orders", "订单"),
    "revenue": ("Revenue", "销售额"),
    "net_revenue": ("Revenue, net of refunds", "净销售额（扣除退款）"),
    "refunded": ("Refunded", "退款"),
    "period": ("Period", "时间范围"),
    "identities": ("Linked devices", "已关联设备"),
    "quarantine_open": ("Rows in quarantine", "隔离区待处理行"),
    "events_by_type": ("Events by type", "各类事件数量"),
    # activity
    "activity": ("Activity", "行为趋势"),
    "daily_events": ("Daily events by type", "每日事件（按类型）"),
    "daily_revenue": ("Daily orders and revenue", "每日订单与销售额"),
    "channel_mix": ("Sessions' channels", "渠道分布"),
    "day": ("Day", "日期"),
    "count": ("Count", "数量"),
    # ingest
    "ingest": ("Ingest", "数据接入"),
    "batches": ("Batches", "批次"),
    "batch": ("Batch", "批次"),
    "kind": ("Kind", "类型"),
    "sources": ("Sources", "来源文件"),
    "rows_read": ("Rows read", "读取行数"),
    "inserted": ("Inserted", "写入"),
    "duplicates": ("Duplicates", "重复"),
    "quarantined": ("Quarantined", "隔离"),
    "skipped": ("Skipped", "按事件跳过"),
    "previously_removed": ("Kept out (removed before)", "已清除未再写入"),
    "custom_events": (
        "Custom events, left out of analytics until mapped (jingzhun ingest remap)",
        "自定义事件：映射前不参与分析（jingzhun ingest remap）",
    ),
    "event": ("Event", "事件"),
    "seconds": ("Seconds", "耗时（秒）"),
    "quarantine_reasons": ("Why rows were quarantined", "行被隔离的原因"),
    "reason": ("Reason", "原因"),
    "rows": ("Rows", "行数"),
    "no_quarantine": ("No row is waiting in the quarantine.", "隔离区没有待处理的行。"),
    # quality
    "quality": ("Data quality", "数据质量"),
    "order_values": (
        "Order values (log scale) and outlier fences",
        "订单金额分布（对数坐标）与异常阈值",
    ),
    "order_value": ("Order value", "订单金额"),
    "outliers": ("Outlier orders", "异常订单"),
    "bursts": ("Bot-like bursts", "疑似机器人突发流量"),
    "visitor": ("Visitor", "访客"),
    "minutes": ("Minutes", "分钟数"),
    "peak": ("Peak per minute", "每分钟峰值"),
    "missing_rates": ("Missing values per column", "各列缺失率"),
    "missing": ("Missing", "缺失率"),
    "duplicate_rates": ("Duplicate rates", "重复率"),
    "content_duplicates": ("Stored twice under different ids", "不同编号下的重复记录"),
    "flagged": ("Flagged events", "已标记事件"),
    "no_bursts": ("No visitor exceeded the burst threshold.", "没有访客超过突发阈值。"),
    # identity
    "identity": ("Identity stitching", "身份打通"),
    "identity_mix": ("Events by identity", "事件的身份状态"),
    "known": ("Known user", "已知用户"),
    "stitched": ("Anonymous, stitched to a user", "匿名（已关联到用户）"),
    "anonymous": ("Anonymous, not linked", "匿名（未关联）"),
}


class Translator:
    """``t("key")`` in the chosen language."""

    def __init__(self, lang: str) -> None:
        if lang not in LANGS:
            from jingzhun.errors import InputError

            raise InputError(f"unknown language {lang!r}", hint=f"use one of: {', '.join(LANGS)}")
        self.lang = lang
        self._i = LANGS.index(lang)

    def __call__(self, key: str) -> str:
        pair = _STRINGS.get(key)
        if pair is None:
            return key
        return pair[self._i] or pair[0]


def register(strings: dict[str, tuple[str, str]]) -> None:
    """Add a stage's strings (later stages call this for their report sections, the
    dashboard for its pages). One table for all: a key already there with other words is a
    clash that would change what another page says, and is refused."""
    clashes = [k for k, v in strings.items() if k in _STRINGS and _STRINGS[k] != v]
    if clashes:
        raise ValueError(f"strings already registered with other words: {', '.join(clashes)}")
    _STRINGS.update(strings)
