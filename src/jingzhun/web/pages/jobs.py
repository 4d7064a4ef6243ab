"""Jobs: the history of the server's long writes (builds, runs, training, scoring, sends), one
job's state, parameters, progress — followed live by the page's script — and its result or
error; for admins a form per kind of job, checked by the same parameter models as
``POST /v1/jobs``, that says which field is wrong and why."""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from jingzhun.api.deps import get_state
from jingzhun.api.jobs import KINDS, Job
from jingzhun.api.routes.jobs import JobOut
from jingzhun.errors import NotFoundError
from jingzhun.report.i18n import Translator, register
from jingzhun.web.common import (
    PAGE,
    admin_form,
    lang_of,
    number,
    problem,
    render,
    signed_in,
    when,
)

router = APIRouter(include_in_schema=False)

#: A job's states, and those it is still on its way through.
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
LIVE = ("queued", "running")

register(
    {
        "web_jobs_title": ("Jobs", "任务"),
        "web_jobs_intro": (
            "Long writes run here one at a time, in the server: the pages show what they made "
            "as soon as each finishes.",
            "耗时的写入任务在服务器内逐个运行；每个任务完成后，各页面即显示其结果。",
        ),
        "web_jobs_history": ("History", "历史记录"),
        "web_jobs_none": (
            "No job since the server started.",
            "服务器启动以来还没有任务。",
        ),
        "web_jobs_start": ("Start a job", "启动任务"),
        "web_jobs_start_button": ("Start", "启动"),
        "web_jobs_read_only": (
            "Starting jobs needs an admin key.",
            "启动任务需要 admin 权限的密钥。",
        ),
        "web_jobs_job": ("Job", "任务"),
        "web_jobs_state": ("State", "状态"),
        "web_jobs_created": ("Submitted", "提交时间"),
        "web_jobs_started": ("Started", "开始时间"),
        "web_jobs_finished": ("Finished", "结束时间"),
        "web_jobs_took": ("Took", "耗时"),
        "web_jobs_progress": ("Progress", "进度"),
        "web_jobs_error": ("Error", "错误"),
        "web_jobs_result": ("Result", "结果"),
        "web_jobs_params": ("Parameters", "参数"),
        "web_jobs_no_params": ("Defaults only.", "全部使用默认值。"),
        "web_jobs_seconds": ("{s} s", "{s} 秒"),
        "web_jobs_all": ("All jobs", "全部任务"),
        "web_jobs_no_such_job": (
            "There is no job {value!r} (the server keeps the jobs since it started).",
            "没有编号为 {value!r} 的任务（服务器只保留启动以来的任务）。",
        ),
        "web_jobs_not_started": (
            "The job was not started: a parameter is not right.",
            "任务未启动：有参数不正确。",
        ),
        "web_jobs_unknown_kind": ("There is no job of that kind.", "没有这种任务。"),
        "web_jobs_default": ("Default: {value}", "默认：{value}"),
        "web_jobs_empty_default": ("Leave empty for the default.", "留空则使用默认值。"),
        "web_jobs_state_queued": ("Queued", "排队中"),
        "web_jobs_state_running": ("Running", "运行中"),
        "web_jobs_state_succeeded": ("Succeeded", "已完成"),
        "web_jobs_state_failed": ("Failed", "失败"),
        "web_jobs_state_cancelled": ("Cancelled", "已取消"),
        "web_jobs_kind_profile_build": ("Build profiles", "构建用户画像"),
        "web_jobs_kind_segment_run": ("Run a segmentation", "运行用户分群"),
        "web_jobs_kind_recommend_train": ("Train a recommender", "训练推荐模型"),
        "web_jobs_kind_recommend_batch": ("Write recommendation lists", "批量生成推荐列表"),
        "web_jobs_kind_predict_train": ("Train propensity or churn", "训练购买倾向/流失模型"),
        "web_jobs_kind_predict_score": ("Score users", "为用户打分"),
        "web_jobs_kind_predict_clv": ("Compute lifetime value", "计算客户终身价值"),
        "web_jobs_kind_campaign_send": ("Send a campaign", "发送营销活动"),
        "web_jobs_field_as_of": ("As of", "数据截至"),
        "web_jobs_field_method": ("Method", "方法"),
        "web_jobs_field_name": ("Name", "名称"),
        "web_jobs_field_k": ("Number (k)", "数量（k）"),
        "web_jobs_field_features": ("Features", "特征"),
        "web_jobs_field_random_state": ("Random seed", "随机种子"),
        "web_jobs_field_model": ("Model", "模型"),
        "web_jobs_field_params": ("Model parameters", "模型参数"),
        "web_jobs_field_target": ("Target", "预测目标"),
        "web_jobs_field_horizon_days": ("Horizon (days)", "预测期（天）"),
        "web_jobs_field_unit": ("Time unit", "时间单位"),
        "web_jobs_field_lang": ("Message language", "消息语言"),
        "web_jobs_field_dry_run": ("Dry run (send nothing)", "演练（不实际发送）"),
        "web_jobs_help_as_of": ("Empty: the latest data.", "留空：使用最新数据。"),
        "web_jobs_help_k_segment_run": (
            "Segments, 2 or more, or auto to choose by silhouette.",
            "分群数（不少于 2），或填 auto 按轮廓系数自动选择。",
        ),
        "web_jobs_help_k_recommend_batch": (
            "Items per user (1 to 1000). Empty: the configured number.",
            "每位用户的推荐数（1 到 1000）。留空：使用配置值。",
        ),
        "web_jobs_help_features": (
            "Profile traits separated by commas. Empty: the method's own.",
            "以逗号分隔的画像特征。留空：使用该方法的默认特征。",
        ),
        "web_jobs_help_params": (
            "name=value pairs separated by commas, e.g. factors=64, iterations=20.",
            "以逗号分隔的 名称=取值，例如 factors=64, iterations=20。",
        ),
        "web_jobs_help_model": (
            "Empty: the configured or active one.",
            "留空：使用配置的或当前启用的模型。",
        ),
        "web_jobs_help_name_segment_run": (
            "Empty: the method's name.",
            "留空：使用方法名。",
        ),
        "web_jobs_help_name_campaign_send": (
            "The campaign to send (see Campaigns).",
            "要发送的营销活动（见“营销活动”页）。",
        ),
        "web_jobs_opt_propensity": ("Purchase propensity", "购买倾向"),
        "web_jobs_opt_churn": ("Churn", "流失"),
        "web_jobs_opt_uplift": ("Uplift", "增益"),
        "web_jobs_opt_day": ("Day", "天"),
        "web_jobs_opt_week": ("Week", "周"),
        "web_jobs_opt_month": ("Month", "月"),
        "web_jobs_opt_en": ("English", "英文"),
        "web_jobs_opt_zh": ("Chinese", "中文"),
        "web_jobs_opt_bgnbd": ("BG/NBD", "BG/NBD"),
        "web_jobs_opt_pareto": ("Pareto/NBD", "Pareto/NBD"),
        "web_jobs_opt_rfm": ("RFM", "RFM 分层"),
        "web_jobs_opt_kmeans": ("k-means", "K 均值"),
        "web_jobs_opt_hierarchical": ("Hierarchical", "层次聚类"),
        "web_jobs_opt_dbscan": ("DBSCAN", "DBSCAN"),
        "web_jobs_opt_hdbscan": ("HDBSCAN", "HDBSCAN"),
        "web_jobs_opt_gmm": ("Gaussian mixture", "高斯混合"),
        "web_jobs_opt_som": ("Self-organising map", "自组织映射"),
        "web_jobs_err_greater_than_equal": ("must be at least {ge}", "不能小于 {ge}"),
        "web_jobs_err_greater_than": ("must be more than {gt}", "必须大于 {gt}"),
        "web_jobs_err_less_than_equal": ("must be at most {le}", "不能大于 {le}"),
        "web_jobs_err_less_than": ("must be less than {lt}", "必须小于 {lt}"),
        "web_jobs_err_int_parsing": ("must be a whole number", "必须是整数"),
        "web_jobs_err_int_from_float": ("must be a whole number", "必须是整数"),
        "web_jobs_err_float_parsing": ("must be a number", "必须是数字"),
        "web_jobs_err_literal_error": ("must be one of {expected}", "必须是以下之一：{expected}"),
        "web_jobs_err_datetime_parsing": (
            "must be a date and time (2026-01-31T09:00)",
            "必须是日期和时间（如 2026-01-31T09:00）",
        ),
        "web_jobs_err_datetime_from_date_parsing": (
            "must be a date and time (2026-01-31T09:00)",
            "必须是日期和时间（如 2026-01-31T09:00）",
        ),
        "web_jobs_err_string_too_long": (
            "must be at most {max_length} characters",
            "最多 {max_length} 个字符",
        ),
        "web_jobs_err_string_too_short": ("must not be empty", "不能为空"),
        "web_jobs_err_missing": ("is required", "必填"),
        "web_jobs_err_too_long": ("at most {max_length} entries", "最多 {max_length} 项"),
        "web_jobs_err_pairs": (
            "write name=value pairs separated by commas",
            "请写成以逗号分隔的 名称=取值",
        ),
        "web_jobs_or_auto": ("(or auto)", "（或填 auto）"),
        "web_jobs_r_run_id": ("Segment run", "分群运行"),
        "web_jobs_r_model_id": ("Model", "模型"),
        "web_jobs_r_name": ("Name", "名称"),
        "web_jobs_r_method": ("Method", "方法"),
        "web_jobs_r_users": ("Users", "用户数"),
        "web_jobs_r_segments": ("Segments", "分群数"),
        "web_jobs_r_seconds": ("Seconds", "耗时（秒）"),
        "web_jobs_r_rows": ("Rows written", "写入行数"),
        "web_jobs_r_as_of": ("As of", "数据截至"),
        "web_jobs_r_traits": ("Traits", "画像特征"),
        "web_jobs_r_tags": ("Tags", "标签"),
        "web_jobs_r_metrics": ("Metrics", "指标"),
        "web_jobs_r_params": ("Parameters", "参数"),
        "web_jobs_r_features": ("Features", "特征"),
        "web_jobs_r_portraits": ("Segment portraits", "分群画像"),
    }
)


# -- the forms --------------------------------------------------------------------------------


def _members(annotation: Any) -> list[Any]:
    """The types a field takes, None left out (``int | None`` → ``[int]``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _base(annotation: Any) -> Any:
    """``Annotated[int, …]`` → ``int``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _bounds(info: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(m, name, None) is not None:
                out[name] = getattr(m, name)
    return out


def field_specs(kind: str, t: Translator) -> list[dict[str, Any]]:
    """The inputs of ``kind``'s form, from its parameter model: a select for a choice of
    words, a number for a number, a date and time for ``as_of``, a checkbox for yes/no,
    text for the rest (a list as words separated by commas, a mapping as name=value pairs)."""
    model: type[BaseModel] = KINDS[kind][0]
    specs = []
    for name, info in model.model_fields.items():
        members = [_base(m) for m in _members(info.annotation)]
        default = None if info.default is PydanticUndefined else info.default
        spec: dict[str, Any] = {
            "name": name,
            "label": t(f"web_jobs_field_{name}"),
            "default": default,
            "required": info.is_required(),
            "options": None,
            "input": "text",
            "bounds": _bounds(info),
        }
        literal = [m for m in members if typing.get_origin(m) is Literal]
        rest = [m for m in members if typing.get_origin(m) is not Literal]
        if literal and not rest:
            values = [v for m in literal for v in typing.get_args(m)]
            spec["input"] = "select"
            spec["options"] = [(v, _option(t, v)) for v in values]
        elif rest == [bool]:
            spec["input"] = "checkbox"
        elif rest == [datetime]:
            spec["input"] = "datetime-local"
        elif rest in ([int], [float]) and not literal:
            spec["input"] = "number"
            spec["step"] = "1" if rest == [int] else "any"
        elif rest and typing.get_origin(rest[0]) is list:
            spec["input"] = "list"
        elif rest and typing.get_origin(rest[0]) is dict:
            spec["input"] = "pairs"
        spec["help"] = _help(t, kind, name, spec)
        specs.append(spec)
    return specs


def _option(t: Translator, value: Any) -> str:
    label = t(f"web_jobs_opt_{value}")
    return str(value) if label == f"web_jobs_opt_{value}" else label


def _help(t: Translator, kind: str, name: str, spec: dict[str, Any]) -> str:
    choice = spec["input"] in ("select", "checkbox")
    # A field's general help is for typing it in; a choice needs none.
    for key in [f"web_jobs_help_{name}_{kind}"] + ([] if choice else [f"web_jobs_help_{name}"]):
        text = t(key)
        if text != key:
            return text
    if choice:
        return ""
    if spec["default"] is not None:
        return t("web_jobs_default").format(value=spec["default"])
    return "" if spec["required"] else t("web_jobs_empty_default")


def _forms(t: Translator, values: dict[str, dict[str, str]] | None = None,
           errors: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    return [
        {
            "kind": kind,
            "label": t(f"web_jobs_kind_{kind}"),
            "fields": field_specs(kind, t),
            "typed": (values or {}).get(kind),
            "errors": (errors or {}).get(kind, {}),
        }
        for kind in KINDS
    ]


class _Unreadable(ValueError):
    """A field typed in a shape the page cannot read (pairs without '=')."""


def _pairs(text: str) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise _Unreadable(part)
        value = value.strip()
        for cast in (int, float):
            try:
                out[key.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = value
    return out


def parse_form(kind: str, fields: dict[str, str], t: Translator) -> tuple[Any, dict[str, str]]:
    """The parameters of a submitted form, checked by ``kind``'s parameter model (as
    ``POST /v1/jobs`` checks them): ``(params, {})``, or ``(None, {field: why})``."""
    model: type[BaseModel] = KINDS[kind][0]
    raw: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in field_specs(kind, t):
        name, value = spec["name"], fields.get(spec["name"], "")
        if spec["input"] == "checkbox":
            raw[name] = value in ("on", "true", "1")
            continue
        value = value.strip()
        if value == "":
            continue  # the default
        if spec["input"] == "list":
            raw[name] = [v.strip() for v in value.split(",") if v.strip()]
        elif spec["input"] == "pairs":
            try:
                raw[name] = _pairs(value)
            except _Unreadable:
                errors[name] = t("web_jobs_err_pairs")
        else:
            raw[name] = value
    if errors:
        return None, errors
    try:
        return model.model_validate(raw), {}
    except ValidationError as exc:
        return None, _messages(exc, t)


def _messages(exc: ValidationError, t: Translator) -> dict[str, str]:
    """Each wrong field's first problem, in the page's language."""
    found: dict[str, list[dict[str, Any]]] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "params"
        found.setdefault(field, []).append(err)
    out = {}
    for field, errs in found.items():
        first = errs[0]
        key = f"web_jobs_err_{first['type']}"
        text = t(key)
        if text == key:
            text = first["msg"]
        else:
            try:
                text = text.format(**(first.get("ctx") or {}))
            except (KeyError, IndexError):
                text = first["msg"]
        if first["type"] != "literal_error" and any(e["type"] == "literal_error" for e in errs):
            text += ("" if t.lang == "zh" else " ") + t("web_jobs_or_auto")
        out[field] = text
    return out


# -- the pages --------------------------------------------------------------------------------


def _row(job: Job, t: Translator) -> dict[str, Any]:
    return {
        "job": job,
        "kind_label": t(f"web_jobs_kind_{job.kind}"),
        "state_label": t(f"web_jobs_state_{job.state}"),
        "progress": _progress_text(job.progress),
        "error": None if job.error is None else _cut(job.error, 160),
    }


def _progress_text(p: dict[str, Any] | None) -> str:
    if not p:
        return ""
    if p.get("done") is not None:
        return f"{p['done']:,}" + (f" / {p['total']:,}" if p.get("total") else "")
    return str(p.get("step") or "")


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _jobs_page(request: Request, session: Any, *, page: str | None = None, status: int = 200,
               values: dict[str, dict[str, str]] | None = None,
               errors: dict[str, dict[str, str]] | None = None,
               failed_kind: str | None = None) -> Response:  # fmt: skip
    t = Translator(lang_of(request))
    jobs = get_state(request).jobs.list()
    pages = max(1, -(-len(jobs) // PAGE))
    at = min(number(page, 1), pages)
    return render(
        request,
        "jobs.html",
        session,
        status=status,
        jobs=[_row(j, t) for j in jobs[(at - 1) * PAGE : at * PAGE]],
        total=len(jobs),
        page=at,
        pages=pages,
        forms=_forms(t, values, errors) if session.admin else [],
        failed_kind=failed_kind,
        failed_label=t(f"web_jobs_kind_{failed_kind}") if failed_kind else None,
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, page: str | None = None) -> Response:
    session = signed_in(request)
    return _jobs_page(request, session, page=page)


@router.post("/jobs")
async def start_job(request: Request) -> Response:
    got = await admin_form(request)
    if isinstance(got, Response):
        return got
    session, fields = got
    kind = fields.get("kind", "")
    if kind not in KINDS:
        return problem(request, session, 422, "web_jobs_unknown_kind", back="/jobs")
    t = Translator(lang_of(request))
    params, errors = parse_form(kind, fields, t)
    if params is None:
        return _jobs_page(
            request, session, status=422, values={kind: fields}, errors={kind: errors},
            failed_kind=kind,
        )  # fmt: skip
    job = get_state(request).jobs.submit(kind, params)
    return RedirectResponse(f"/jobs/{quote(job.job_id, safe='')}", status_code=303)


def _out(job: Job) -> dict[str, Any]:
    """A job as ``GET /v1/jobs/{id}`` answers it."""
    return JobOut.of(job).model_dump(mode="json")


# Before /jobs/{job_id}, which would take "ID.json" for an id.
@router.get("/jobs/{job_id}.json")
def job_json(request: Request, job_id: str) -> Response:
    signed_in(request)
    try:
        job = get_state(request).jobs.get(job_id)
    except NotFoundError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    return JSONResponse(_out(job), headers={"Cache-Control": "no-store"})


def _value(value: Any, lang: str) -> str:
    """A parameter's or result's value as short text (a time as the language writes it)."""
    if isinstance(value, str):
        if re.match(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}", value):
            try:
                return when(datetime.fromisoformat(value), lang)
            except ValueError:
                pass
        return _cut(value, 200)
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    plain = (str, int, float, bool, type(None))
    if isinstance(value, list) and all(isinstance(v, plain) for v in value):
        return _cut(", ".join(str(v) for v in value), 240)
    if isinstance(value, dict) and all(isinstance(v, plain) for v in value.values()):
        return _cut(" · ".join(f"{k}: {_value(v, lang)}" for k, v in value.items()), 240)
    if isinstance(value, list) and all(isinstance(v, dict) and "label" in v for v in value):
        return _cut(", ".join(str(v["label"]) for v in value), 240)  # segment portraits
    return _cut(json.dumps(value, ensure_ascii=False, default=str), 240)


def _labelled(d: dict[str, Any] | None, t: Translator, prefix: str) -> list[dict[str, Any]]:
    out = []
    for k, v in (d or {}).items():
        if v in ({}, [], "") and prefix == "web_jobs_r_":
            continue  # a result's empty parts say nothing
        key = f"{prefix}{k}"
        label = t(key)
        link = None
        if k == "run_id" and isinstance(v, str):
            link = "/segments?run=" + quote(v, safe="")
        elif k == "model_id" and isinstance(v, str):
            link = "/models/" + quote(v, safe="")
        out.append(
            {"label": k if label == key else label, "value": _value(v, t.lang), "link": link}
        )
    return out


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> Response:
    session = signed_in(request)
    t = Translator(lang_of(request))
    try:
        job = get_state(request).jobs.get(job_id)
    except NotFoundError:
        return problem(request, session, 404, "web_jobs_no_such_job", value=job_id[:200],
                       back="/jobs")  # fmt: skip
    return render(
        request,
        "job.html",
        session,
        row=_row(job, t),
        job=job,
        live=job.state in LIVE,
        params=_labelled(job.params, t, "web_jobs_field_"),
        result=_labelled(job.result, t, "web_jobs_r_"),
        states={s: t(f"web_jobs_state_{s}") for s in STATES},
        progress=job.progress,
    )


__all__ = ["field_specs", "parse_form", "router"]
