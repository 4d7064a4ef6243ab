"""The recommend stage's report section: the model comparison, the batch, and examples."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jingzhun.recommend import read as recommend_read
from jingzhun.report.html import cards, figure, heading, note, table
from jingzhun.report.i18n import Translator, register
from jingzhun.report.registry import Section, section

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.workspace import Workspace

register(
    {
        "recommendations": ("Recommendations", "个性化推荐"),
        "rec_model": ("Active model", "当前模型"),
        "rec_users": ("Users with a list", "已生成推荐的用户"),
        "rec_coverage": ("Catalog shown", "目录覆盖率"),
        "rec_cold": ("Cold-start lists", "冷启动推荐占比"),
        "rec_compare": ("Model comparison (offline, test part)", "模型对比（离线评估，测试集）"),
        "rec_protocol": (
            "{split} split, top {k}; hyperparameters and blend weights chosen on a validation split of the training part; {users} test users.",
            "{split} 划分，前 {k} 名；超参数与融合权重在训练部分划出的验证集上选择；测试用户 {users} 位。",
        ),
        "rec_metrics_chart": ("Ranking quality by model", "各模型的排序质量"),
        "rec_tradeoff": ("Accuracy against catalog coverage", "准确率与目录覆盖率的权衡"),
        "rec_metric_value": ("Score at k = {k} (0 to 1)", "前 {k} 名的指标值（0 到 1）"),
        "rec_reasons": ("Why items were recommended", "推荐理由分布"),
        "rec_top_items": ("Most recommended items", "被推荐最多的商品"),
        "rec_examples": ("Example lists with their explanations", "推荐示例及解释"),
        "model": ("Model", "模型"),
        "user": ("User", "用户"),
        "item": ("Item", "商品"),
        "title": ("Title", "名称"),
        "explanation": ("Why", "推荐理由"),
        "times": ("Lists", "出现次数"),
        "reason_bought": ("because you bought …", "因为您购买了…"),
        "reason_viewed": ("because you viewed …", "因为您浏览过…"),
        "reason_interest": ("matches your interest", "符合您的兴趣"),
        "reason_segment": ("popular in your segment", "所在群体热门"),
        "reason_popular": ("popular right now", "当前热门"),
    }
)

METRIC_LABELS = {
    "precision": "P@k",
    "recall": "R@k",
    "ndcg": "nDCG@k",
    "map": "MAP",
    "hit_rate": "HR@k",
    "mrr": "MRR",
}


@section(90)
def recommendations(ws: Workspace, t: Translator) -> Section | None:
    from jingzhun.recommend.training import latest_evaluation

    batch = recommend_read.batch_overview(ws.store)
    evaluation = latest_evaluation(ws.store)
    if batch is None and evaluation is None:
        return None
    body = ""
    if batch is not None:
        body += _batch(ws, t, batch)
    if evaluation is not None:
        body += _comparison(t, evaluation)
    if batch is not None:
        body += _examples(ws, t)
    return Section("recommendations", t("recommendations"), body)


def _batch(ws: Workspace, t: Translator, batch: recommend_read.BatchOverview) -> str:
    import plotly.graph_objects as go

    reasons = recommend_read.reason_counts(ws.store)
    body = cards(
        [
            (t("rec_model"), batch.model),
            (t("rec_users"), batch.users),
            (t("rec_coverage"), f"{batch.coverage:.1%}"),
            (t("rec_cold"), f"{recommend_read.cold_start_share(ws.store):.1%}"),
        ]
    )
    fig = go.Figure(go.Bar(x=[t(f"reason_{k}") for k in reasons["kind"]], y=reasons["n"].tolist()))
    fig.update_layout(title=t("rec_reasons"))
    body += figure(fig, height=300)
    top = recommend_read.top_items(ws.store, limit=15)
    fig = go.Figure(
        go.Bar(
            y=(top["title"].fillna(top["item_id"])).tolist()[::-1],
            x=top["n"].tolist()[::-1],
            orientation="h",
        )
    )
    fig.update_layout(title=t("rec_top_items"), xaxis_title=t("times"))
    body += figure(fig, height=420)
    return body


def _comparison(t: Translator, ev: dict) -> str:
    body = heading(t("rec_compare"))
    body += note(comparison_note(t, ev))
    body += table(
        comparison_table(ev).round(4),
        columns={"model": t("model")} | {k: v for k, v in METRIC_LABELS.items()},
    )
    return body + "".join(comparison_charts(t, ev))


def comparison_note(t: Translator, ev: dict) -> str:
    """How an offline evaluation (``ev``: the stored evaluation's JSON) compared the
    recommenders: the split, k and the test users, in words."""
    return t("rec_protocol").format(
        split=ev["split"], k=ev["k"], users=f"{ev['log']['test_users']:,}"
    )


def comparison_table(ev: dict) -> pd.DataFrame:
    """One row per recommender of an offline evaluation: precision, recall, nDCG, MAP, hit
    rate, MRR at k, catalog coverage and the rest of
    :data:`jingzhun.recommend.evaluate.COMPARISON_COLUMNS`."""
    from jingzhun.recommend.evaluate import comparison_frame

    return comparison_frame(ev)


def comparison_charts(t: Translator, ev: dict) -> list[str]:
    """An offline evaluation's charts as fragments: ranking quality by model (P, R, nDCG and
    MAP at k) and accuracy (nDCG) against the share of the catalog shown."""
    import plotly.graph_objects as go

    frame = comparison_table(ev)
    fig = go.Figure()
    for metric in ("precision", "recall", "ndcg", "map"):
        fig.add_trace(
            go.Bar(
                name=METRIC_LABELS[metric],
                x=frame["model"].tolist(),
                y=frame[metric].astype(float).tolist(),
            )
        )
    fig.update_layout(
        title=t("rec_metrics_chart"),
        barmode="group",
        xaxis_title=t("model"),
        yaxis_title=t("rec_metric_value").format(k=ev["k"]),
    )
    out = [figure(fig, height=340)]
    fig = go.Figure(
        go.Scatter(
            x=frame["coverage"].astype(float).tolist(),
            y=frame["ndcg"].astype(float).tolist(),
            text=frame["model"].tolist(),
            mode="markers+text",
            textposition="top center",
        )
    )
    fig.update_layout(title=t("rec_tradeoff"), xaxis_title=t("rec_coverage"), yaxis_title="nDCG@k")
    fig.update_xaxes(tickformat=".0%")
    out.append(figure(fig, height=320))
    return out


def _examples(ws: Workspace, t: Translator) -> str:
    from jingzhun.recommend.rules import reason_text

    users = recommend_read.example_users(ws.store, limit=3)
    if not users:
        return ""
    rows = recommend_read.lists(ws.store, users, max_rank=5)
    # Only the items the reasons name ("bought:ITEM", "viewed:ITEM") need a title.
    titles = recommend_read.titles(ws.store, {r.partition(":")[2] for r in rows["reason"]})
    rows["explanation"] = [reason_text(r, t.lang, titles) for r in rows["reason"]]
    return heading(t("rec_examples")) + table(
        rows[["user_id", "rank", "item_id", "title", "explanation"]],
        columns={
            "user_id": t("user"),
            "item_id": t("item"),
            "title": t("title"),
            "explanation": t("explanation"),
        },
    )
