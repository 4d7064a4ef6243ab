"""Quarantine: the rows ingest kept out, by reason and by batch; the rows of one reason a page
at a time with their raw values (escaped, long ones cut); for admins, replaying them (after a
fix to the configuration) or discarding them."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jingzhun.api.deps import get_state
from jingzhun.contracts.events import PII_FIELDS
from jingzhun.errors import JingzhunError
from jingzhun.ingest.quarantine import Selection
from jingzhun.report.i18n import Translator, register
from jingzhun.web.common import PAGE, admin_form, lang_of, number, problem, render, signed_in

router = APIRouter(include_in_schema=False)

register(
    {
        "web_quarantine_title": ("Quarantine", "隔离区"),
        "web_quarantine_intro": (
            "Rows ingest refused, kept with the reason and where they came from. Fix the "
            "configuration and replay them, or discard what cannot be saved.",
            "导入时被拒绝的行，连同原因和来源一起保留。修正配置后可重新导入，无法挽救的可丢弃。",
        ),
        "web_quarantine_empty": (
            "No row is waiting in the quarantine.",
            "隔离区没有待处理的行。",
        ),
        "web_quarantine_open": ("Open rows", "待处理行"),
        "web_quarantine_by_reason": ("Open rows by reason", "按原因统计的待处理行"),
        "web_quarantine_by_batch": ("Batches with quarantined rows", "含隔离行的导入批次"),
        "web_quarantine_kind": ("Data", "数据类型"),
        "web_quarantine_kind_events": ("Events", "事件"),
        "web_quarantine_kind_users": ("Users", "用户"),
        "web_quarantine_kind_items": ("Items", "商品"),
        "web_quarantine_reason": ("Reason", "原因"),
        "web_quarantine_rows": ("Rows", "行数"),
        "web_quarantine_see": ("See the rows", "查看"),
        "web_quarantine_batch": ("Batch", "批次"),
        "web_quarantine_received": ("Received", "接收时间"),
        "web_quarantine_replayed": ("Replayed", "已重新导入"),
        "web_quarantine_discarded": ("Discarded", "已丢弃"),
        "web_quarantine_top_reason": ("Commonest reason", "最常见原因"),
        "web_quarantine_row": ("#", "编号"),
        "web_quarantine_source": ("Source", "来源"),
        "web_quarantine_raw": ("Raw values", "原始值"),
        "web_quarantine_rows_of": ("Rows: {value}", "明细：{value}"),
        "web_quarantine_first": ("First page", "第一页"),
        "web_quarantine_more": ("Next {n}", "后 {n} 行"),
        "web_quarantine_showing": (
            "Rows {a}–{b} of {n}",
            "第 {a}–{b} 行，共 {n} 行",
        ),
        "web_quarantine_replay": ("Replay these rows", "重新导入这些行"),
        "web_quarantine_replay_help": (
            "Validate them again (after a fix to the configuration): rows that pass are "
            "ingested, the others stay here.",
            "重新校验（在修正配置之后）：通过的行被导入，其余的继续留在隔离区。",
        ),
        "web_quarantine_discard": ("Discard these rows", "丢弃这些行"),
        "web_quarantine_discard_help": (
            "They stay on record, marked discarded, and leave the open rows.",
            "这些行会标记为已丢弃并保留记录，不再计入待处理行。",
        ),
        "web_quarantine_done_replay": (
            "Replayed {n} rows: {ok} ingested, {still} still quarantined.",
            "已重新导入 {n} 行：{ok} 行成功，{still} 行仍被隔离。",
        ),
        "web_quarantine_done_discard": ("Discarded {n} rows.", "已丢弃 {n} 行。"),
        "web_quarantine_no_rows": (
            "No open row has this reason (any more).",
            "（已）没有此原因的待处理行。",
        ),
        "web_quarantine_all": ("All reasons", "全部原因"),
        "web_quarantine_failed": ("That did not work: {value}", "操作未成功：{value}"),
        "web_quarantine_link": ("See the quarantine", "查看隔离区"),
        "web_quarantine_no_file": ("sent to the server", "经服务器接收"),
        "web_quarantine_record": ("record {n}", "第 {n} 条"),
        "web_quarantine_masked": (
            "Personal fields (email, phone, name, address) are masked, unless the row was "
            "refused for one of them.",
            "个人信息字段（邮箱、电话、姓名、地址）已遮盖，除非该行正是因此字段被拒。",
        ),
    }
)

#: Longest value of a raw row shown, and longest row.
VALUE_CHARS = 80
ROW_CHARS = 400


def _masked(value: str) -> str:
    """A personal value shown by its shape only: its first character (and an email's
    domain)."""
    if not value:
        return value
    _, at, domain = value.partition("@")
    return value[:1] + "•••" + (at + domain if at and domain else "")


#: Email addresses and phone numbers inside free text (a line that did not parse, a nested
#: value): masked wherever they are, not only under a personal field's name.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\d:.-])\+?\d(?:[ -]?\d){9,13}(?![\d:.])")  # 10-14 digits


def _scrub(text: str) -> str:
    text = _EMAIL.sub(lambda m: _masked(m.group(0)), text)
    return _PHONE.sub(lambda m: m.group(0)[:1] + "•••", text)


def _hide(value: Any) -> Any:
    """``value`` with every personal field masked, however deeply nested (a Segment message
    keeps its traits inside)."""
    if isinstance(value, dict):
        return {
            k: _masked(str(v)) if k in PII_FIELDS and v is not None else _hide(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return value


def raw_text(raw: str | None, reason: str | None = None) -> str:
    """A quarantined row's raw values as ``name: value · …``, long values and rows cut (the
    template escapes it). Personal fields (email, phone, name, address) are masked at any
    depth, and so is anything shaped like an email address or a phone number in other text,
    but for the field the row was refused for, which is what there is to fix."""
    if raw is None:
        return ""
    try:
        row = json.loads(raw)
    except ValueError:
        row = raw
    if not isinstance(row, dict):
        text = _scrub(str(row))
        return text if len(text) <= ROW_CHARS else text[: ROW_CHARS - 1] + "…"
    blamed = (reason or "").split(":", 1)[0].strip()
    parts = []
    for k, v in row.items():
        if k == blamed:
            value = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        elif v is None:
            value = "–"
        elif k in PII_FIELDS:
            value = _masked(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
        elif isinstance(v, dict | list) or k == "_raw_line":  # free text: scrubbed whole
            value = _scrub(v if isinstance(v, str) else json.dumps(_hide(v), ensure_ascii=False))
        else:  # a plain value of its own field: an address typed in the wrong one is hidden
            value = _EMAIL.sub(lambda m: _masked(m.group(0)), str(v))
        if len(value) > VALUE_CHARS:
            value = value[: VALUE_CHARS - 1] + f"… ({len(value):,})"
        parts.append(f"{k}: {value}")
    text = " · ".join(parts)
    return text if len(text) <= ROW_CHARS else text[: ROW_CHARS - 1] + "…"


def _source(source: str | None, line: Any, t: Translator) -> tuple[str, str]:
    """Where a row came from, short (the file's name, the record) and in full."""
    full = source or ""
    name = full.replace("\\", "/").rsplit("/", 1)[-1] if full not in ("", "-") else ""
    short = name or t("web_quarantine_no_file")
    if line is not None and line == line:
        short += " · " + t("web_quarantine_record").format(n=int(line))
    return short, full


def _kind(t: Translator, kind: str) -> str:
    key = f"web_quarantine_kind_{kind}"
    label = t(key)
    return kind if label == key else label


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine_page(
    request: Request,
    kind: str | None = None,
    reason: str | None = None,
    after: str | None = None,
    shown: str | None = None,
    done: str | None = None,
    n: str | None = None,
    ok: str | None = None,
    still: str | None = None,
) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    t = Translator(lang_of(request))
    q = ws.ingest.quarantine
    reasons = q.reasons().to_dict("records")
    for r in reasons:
        r["kind_label"] = _kind(t, r["kind"])
        r["href"] = "/quarantine?" + urlencode({"kind": r["kind"], "reason": r["reason"]}) + "#rows"
    batches = q.batches()
    batches = batches[(batches["open"] > 0)].head(PAGE).to_dict("records")
    for b in batches:
        b["kind_label"] = _kind(t, b["kind"])
    selected = None
    if reason:
        kind = kind or None
        selection = Selection(kind=kind, group=reason[:2000])
        total = int(q.reasons(selection)["rows"].sum())  # the list above stops at 50 reasons
        start = number(after, 0, lo=0, hi=2**62)
        skipped = number(shown, 0, lo=0, hi=2**62)
        frame = q.page(selection, limit=PAGE + 1, after=start or None)
        more = len(frame) > PAGE
        frame = frame.head(PAGE)
        rows = []
        for r in frame.itertuples(index=False):
            short, full = _source(r.source, r.line_no, t)
            rows.append(
                {
                    "id": int(r.quarantine_id),
                    "batch": r.batch_id,
                    "source": short,
                    "path": full,
                    "reason": r.reason,
                    "raw": raw_text(r.raw, r.reason),
                    "received": r.received_at,
                }
            )
        base = {"kind": kind or "", "reason": reason}
        selected = {
            "kind": kind or "",
            "kind_label": _kind(t, kind) if kind else "",
            "reason": reason,
            "rows": rows,
            "total": total,
            "from": skipped + 1,
            "to": skipped + len(rows),
            "first": "/quarantine?" + urlencode(base) + "#rows" if start else None,
            "next": "/quarantine?"
            + urlencode({**base, "after": rows[-1]["id"], "shown": skipped + len(rows)})
            + "#rows"
            if more
            else None,
        }
    message = None
    if done == "replay":
        message = t("web_quarantine_done_replay").format(
            n=number(n, 0, lo=0), ok=number(ok, 0, lo=0), still=number(still, 0, lo=0)
        )
    elif done == "discard":
        message = t("web_quarantine_done_discard").format(n=number(n, 0, lo=0))
    return render(
        request,
        "quarantine.html",
        session,
        reasons=reasons,
        open_rows=sum(int(r["rows"]) for r in reasons),
        batches=batches,
        selected=selected,
        message=message,
        page_size=PAGE,
    )


async def _act(request: Request, action: str) -> Response:
    got = await admin_form(request)
    if isinstance(got, Response):
        return got
    session, fields = got
    reason = fields.get("reason", "")[:2000]
    if not reason.strip():
        return problem(request, session, 422, "web_quarantine_no_rows", back="/quarantine")
    selection = Selection(kind=fields.get("kind") or None, group=reason)
    state = get_state(request)
    try:
        if action == "discard":
            n = await asyncio.wrap_future(
                state.run_write(lambda ws: ws.ingest.quarantine.discard(selection))
            )
            query: dict[str, Any] = {"done": "discard", "n": n}
        else:
            results = await asyncio.wrap_future(
                state.run_write(lambda ws: ws.ingest.quarantine.replay(selection))
            )
            query = {
                "done": "replay",
                "n": sum(r.rows_read for r in results),
                "ok": sum(r.resolved for r in results),
                "still": sum(r.quarantined for r in results),
            }
            if any(r.kind == "items" for r in results):  # titles and filters served anew
                await asyncio.to_thread(state.catalog_changed)
    except JingzhunError as exc:
        return problem(request, session, 422, "web_quarantine_failed", value=str(exc)[:300],
                       title="web_refused", back="/quarantine")  # fmt: skip
    return RedirectResponse("/quarantine?" + urlencode(query), status_code=303)


@router.post("/quarantine/discard")
async def discard(request: Request) -> Response:
    return await _act(request, "discard")


@router.post("/quarantine/replay")
async def replay(request: Request) -> Response:
    return await _act(request, "replay")


__all__ = ["raw_text", "router"]
