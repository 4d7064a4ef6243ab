"""What other parts read of the segment stage: its active runs, their members with the traits
the run was fitted on, and the members as a file.

The report, the CLI and the coming server and campaign stages call these functions instead of
querying ``segment_members`` or the registry's segment runs. Besides the segment stage's tables
they read only the profiles below it. Every value reaches DuckDB as a ``?`` parameter.

Examples
--------
>>> from jingzhun.segment import read                                   # doctest: +SKIP
>>> read.active_runs(store)                                             # doctest: +SKIP
['behaviour-2', 'rfm-1']
>>> read.member_features(store, "behaviour", sample=100).columns[:3].tolist()  # doctest: +SKIP
['user_id', 'recency_days', 'frequency']
"""

from __future__ import annotations

import os
import re
from typing import Any

import ibis.expr.types as ir
import pandas as pd

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile.build import profile_columns
from jingzhun.segment.features import select_sql
from jingzhun.segment.runs import resolve, run_id_of
from jingzhun.store import Registry, Store, engines
from jingzhun.store import desensitize as ds
from jingzhun.store.export import copy_out
from jingzhun.store.sql import Sql

__all__ = [
    "LANGS",
    "active_runs",
    "export_members",
    "label_text",
    "member_features",
    "members",
]

#: The languages a portrait's name is given in.
LANGS = ("en", "zh")

#: The words of portrait names (:data:`jingzhun.segment.portraits.WORDS`, the fixed names and
#: the standard RFM segments) in Chinese. Category names are the catalog's own and stay as
#: they are.
_ZH = {
    "high spend": "高消费",
    "low spend": "低消费",
    "frequent buyers": "高频购买",
    "rare buyers": "低频购买",
    "lapsed": "已流失",
    "recent buyers": "近期购买",
    "long-standing": "老顾客",
    "new": "新顾客",
    "dormant": "沉睡",
    "active lately": "近期活跃",
    "highly active": "高度活跃",
    "seldom active": "很少活跃",
    "many visits": "访问频繁",
    "few visits": "访问较少",
    "big baskets": "大额订单",
    "small baskets": "小额订单",
    "deal seekers": "偏好优惠",
    "full-price buyers": "原价购买",
    "premium": "高端",
    "budget": "平价",
    "decisive": "果断下单",
    "window shoppers": "只逛不买",
    "closers": "加购即买",
    "cart abandoners": "常弃购",
    "heavy browsers": "深度浏览",
    "quick visits": "快速浏览",
    "focused": "兴趣集中",
    "broad taste": "兴趣广泛",
    "email engaged": "邮件活跃",
    "email silent": "邮件沉默",
    "high score": "高评分",
    "low score": "低评分",
    "frequent visitors": "常来访",
    "rare visitors": "少来访",
    "lapsing": "即将流失",
    "recently active buyers": "近期活跃买家",
    "typical customers": "普通顾客",
    "unclustered (noise)": "未归类（噪声）",
    "champions": "重要价值客户",
    "loyal": "忠诚客户",
    "potential loyalist": "潜在忠诚客户",
    "new customers": "新客户",
    "promising": "有潜力客户",
    "need attention": "需要关注",
    "about to sleep": "即将沉睡",
    "at risk": "有流失风险",
    "can't lose them": "不能流失的客户",
    "hibernating": "休眠客户",
    "lost": "已流失客户",
    "no orders yet": "尚未下单",
}
#: "high <trait>" / "low <trait>": a trait without words of its own.
_HIGH_LOW = re.compile(r"(high|low) (\w+)")
#: The number that tells apart segments of the same name: "Typical customers (2)".
_NUMBERED = re.compile(r"(.*) (\([^()]*\))")


def label_text(label: str, lang: str = "en") -> str:
    """A portrait's name in ``lang`` ("High spend · frequent buyers · toys" is
    "高消费 · 高频购买 · toys" in zh): word by word, category names kept as they are.

    Parameters
    ----------
    label : str
        The name as stored (English).
    lang : {"en", "zh"}
        The language.

    Returns
    -------
    str

    Raises
    ------
    InputError
        If ``lang`` is not one of :data:`LANGS`.
    """
    if lang not in LANGS:
        raise InputError(f"lang {lang!r} is not supported", hint="use en or zh", param="lang")
    if lang == "en" or not label:
        return label
    whole = _ZH.get(label.lower())
    if whole is not None:
        return whole
    suffix = ""
    numbered = _NUMBERED.fullmatch(label)
    if numbered is not None:
        label, suffix = numbered.group(1), numbered.group(2)
    words = []
    for word in label.split(" · "):
        zh = _ZH.get(word.lower())
        if zh is None and (m := _HIGH_LOW.fullmatch(word.lower())) is not None:
            zh = f"{m.group(2)}{'偏高' if m.group(1) == 'high' else '偏低'}"
        words.append(zh if zh is not None else word)
    return " · ".join(words) + (f" {suffix}" if suffix else "")


def active_runs(store: Store, *, limit: int | None = None) -> list[str]:
    """The ids of the active segment runs (one per run name), newest first.

    Parameters
    ----------
    limit : int, optional
        At most this many (the newest); default all.

    Returns
    -------
    list of str
        Run ids; empty when nothing was segmented yet.

    Raises
    ------
    InputError
        If ``limit`` is not a whole number of at least 1.
    """
    if limit is not None:
        limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    ids = [r.model_id for r in Registry(store).list("segment") if r.active]
    return ids if limit is None else ids[:limit]


def member_features(
    store: Store, ref: str | None = None, *, sample: int | None = 4000, seed: int = 7
) -> pd.DataFrame:
    """A run's members with the feature values it was fitted on, read from today's profiles.

    Parameters
    ----------
    ref : str, optional
        A run id, or a run name (its active run); default the latest active run.
    sample : int, optional
        Return a uniform sample of this many members (reservoir sampling); None for all.
    seed : int
        The sample's seed: the same seed, members and profiles give the same sample.

    Returns
    -------
    DataFrame
        ``user_id``, one column per feature of the run (derived features computed and gaps
        filled as when fitting, raw values: not scaled) and ``segment``, one row per member
        (in no particular order).

    Raises
    ------
    NotFoundError
        If there is no such run, or no profiles.
    InputError
        If the profiles no longer have a trait the run uses, or ``sample`` or ``seed`` is out
        of range.
    """
    run = resolve(store, ref)
    features: Sql = select_sql(run["features"], profile_columns(store))
    sampled: Sql = ""
    if sample is not None:
        size = bounded_int(sample, "sample", lo=1, hi=MAX_ROWS)
        state = bounded_int(seed, "seed", lo=0, hi=2**31 - 1)
        sampled = f"USING SAMPLE {int(size)} ROWS (reservoir, {int(state)})"
    # The sample is drawn from the run's members: DuckDB samples a FROM clause before its
    # WHERE, so sampling the join itself would draw from every run's members.
    return store.sql(
        f"SELECT * FROM (SELECT f.*, m.segment FROM ({features}) f "
        f"JOIN segment_members m USING (user_id) WHERE m.run_id = ?) {sampled}",
        [run["run_id"]],
    ).df()


def members(
    backend: Any, ref: str, segment: str | None = None, *, param: str = "segment"
) -> tuple[ir.Table, str]:
    """A run's members (``user_id``, ``segment``), optionally of one segment, as an Ibis
    expression over ``backend`` (a store's DuckDB or a lake's Spark), and the run it reads.

    Parameters
    ----------
    ref : str
        A run id, or a run name (its active run).
    segment : str, optional
        One segment's code (``'2'``, ``'champions'``); default every member.
    param : str
        The parameter the caller's user named, for errors.

    Raises
    ------
    NotFoundError
        If there is no such run, or the run has no such segment (the message lists them).
    """
    run_id = run_id_of(backend, ref)
    m = backend.table("segment_members")
    rows = m.filter(m.run_id == run_id).select("user_id", "segment")
    if segment is None:
        return rows, run_id
    codes = sorted(
        str(c) for c in engines.column(backend, rows.select("segment").distinct(), "segment")
    )
    if segment not in codes:
        shown_codes = ", ".join(codes[:30]) + (" …" if len(codes) > 30 else "")
        raise NotFoundError(
            f"{param}: run {run_id} has no segment {segment[:60]!r}",
            hint=f"its segments are {shown_codes}" if codes else "the run has no members",
            param=param if param.isidentifier() else None,
        )
    return rows.filter(rows.segment == segment), run_id


def export_members(
    store: Store, ref: str | None, out: str | os.PathLike[str], *, desensitize: bool = False
) -> int:
    """Write a run's members to Parquet or CSV (by the file's extension), ordered by user id.

    Parameters
    ----------
    ref : str or None
        A run id, or a run name (its active run); None for the latest active run.
    out : str or path-like
        The file to write (``--out``), replaced atomically; see
        :func:`jingzhun.store.export.copy_out`.
    desensitize : bool
        User ids as keyed pseudonyms (:func:`jingzhun.store.desensitize.pseudonym_sql`), the
        same as a desensitized profile export's, ordered by pseudonym.

    Returns
    -------
    int
        The rows written: ``user_id``, ``segment``, ``label`` (the segment's portrait name) and
        ``fitted`` (false for members assigned after the fit).

    Raises
    ------
    NotFoundError
        If there is no such run.
    InputError
        If ``out`` may not be written or is neither ``.parquet`` nor ``.csv``.
    """
    run_id = resolve(store, ref)["run_id"]
    user: Sql = "m.user_id"
    params: list[object] = []
    if desensitize:
        user = ds.pseudonym_sql("m.user_id")
        params = ds.pseudonym_params(store)
    return copy_out(
        store,
        f"SELECT * FROM (SELECT {user} AS user_id, m.segment, p.label, m.fitted "
        "FROM segment_members m LEFT JOIN segment_portraits p USING (run_id, segment) "
        "WHERE m.run_id = ?) ORDER BY user_id",
        out,
        params=[*params, run_id],
    )
