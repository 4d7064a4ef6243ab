"""Models: every trained model of the registry by kind with its headline metrics, one model's
offline metrics and charts (drawn by the HTML report's own functions), which model is active,
and — for admins — activating another."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jingzhun.api.deps import get_state
from jingzhun.errors import NotFoundError
from jingzhun.predict import read as predict_read
from jingzhun.recommend.training import latest_evaluation
from jingzhun.report import predict_sections as predict
from jingzhun.report import recommend_sections as recommend
from jingzhun.report.html import table
from jingzhun.report.i18n import Translator, register
from jingzhun.store.registry import ModelRecord
from jingzhun.web.common import admin_form, lang_of, local, problem, render, signed_in

router = APIRouter(include_in_schema=False)

register(
    {
        "web_models_title": ("Models", "模型"),
        "web_models_intro": (
            "Every model trained on this store, newest first within each kind. The active "
            "one of a kind is what serving, scoring and campaigns use.",
            "在此数据库上训练过的所有模型，每类按时间由新到旧。每类中“启用”的模型用于在线推荐、"
            "打分和营销活动。",
        ),
        "web_models_none": (
            "No model has been trained yet: start one on the Jobs page.",
            "还没有训练过模型：请在“任务”页启动训练。",
        ),
        "web_models_kind_recommender": ("Recommenders", "推荐模型"),
        "web_models_kind_propensity": ("Purchase propensity", "购买倾向模型"),
        "web_models_kind_churn": ("Churn", "流失预警模型"),
        "web_models_kind_uplift": ("Uplift", "增益模型"),
        "web_models_kind_clv": ("Customer lifetime value", "客户终身价值模型"),
        "web_models_kind_segment": ("Segmentations", "分群模型"),
        "web_models_model": ("Model", "模型"),
        "web_models_id": ("Model id", "模型编号"),
        "web_models_trained": ("Trained", "训练时间"),
        "web_models_as_of": ("Data as of", "数据截至"),
        "web_models_fit": ("Fit time", "训练耗时"),
        "web_models_seconds": ("{s} s", "{s} 秒"),
        "web_models_status": ("Status", "状态"),
        "web_models_active": ("Active", "启用中"),
        "web_models_inactive": ("Not active", "未启用"),
        "web_models_activate": ("Activate", "启用"),
        "web_models_activate_help": (
            "Make this the active model of its kind; the one active now is kept and can be "
            "activated again.",
            "将此模型设为该类的启用模型；当前启用的模型会保留，之后可再次启用。",
        ),
        "web_models_auc": ("Test ROC AUC", "测试集 ROC AUC"),
        "web_models_log_loss": ("Log loss (test)", "对数损失（测试集）"),
        "web_models_qini": ("Qini (test)", "Qini 系数（测试集）"),
        "web_models_auuc": ("AUUC (test)", "AUUC（测试集）"),
        "web_models_ndcg": ("nDCG@{k} (offline)", "nDCG@{k}（离线评估）"),
        "web_models_recall": ("Recall@{k} (offline)", "召回率@{k}（离线评估）"),
        "web_models_coverage": ("Catalog coverage", "目录覆盖率"),
        "web_models_silhouette": ("Silhouette", "轮廓系数"),
        "web_models_stability": ("Stability (ARI)", "稳定性（ARI）"),
        "web_models_segments": ("Segments", "分群数"),
        "web_models_loglik": ("Log-likelihood", "对数似然"),
        "web_models_customers": ("Customers fitted", "参与拟合的客户"),
        "web_models_no_such_model": (
            "There is no model {value!r}; pick one from the list.",
            "没有编号为 {value!r} 的模型，请从列表中选择。",
        ),
        "web_models_all": ("All models", "全部模型"),
        "web_models_metrics": ("Offline metrics", "离线评估指标"),
        "web_models_compare_classifiers": ("Classifiers compared", "分类器对比"),
        "web_models_compare_uplift": ("Uplift learners compared", "增益学习器对比"),
        "web_models_compare_recs": (
            "Recommenders compared (latest offline evaluation)",
            "推荐模型对比（最近一次离线评估）",
        ),
        "web_models_no_evaluation": (
            "No offline evaluation of the recommenders yet (jingzhun recommend evaluate).",
            "还没有推荐模型的离线评估（jingzhun recommend evaluate）。",
        ),
        "web_models_this_method": ("This model's method: {m}", "本模型的方法：{m}"),
        "web_models_see_segments": ("See its segments", "查看分群结果"),
        "web_models_params": ("Parameters", "参数"),
        "web_models_param": ("Parameter", "参数"),
        "web_models_value": ("Value", "取值"),
        "web_models_trained_on": ("Trained on", "训练数据"),
        "web_models_users": ("Users", "用户数"),
        "web_models_items": ("Items", "商品数"),
        "web_models_interactions": ("Interactions", "交互数"),
        "web_models_clv_scores": (
            "The distribution is of the CLV scores in the store now (written by the latest CLV run).",
            "分布图为数据库当前的终身价值评分（由最近一次终身价值计算写入）。",
        ),
        "web_models_activated": ("{value} is now the active model.", "{value} 已设为启用模型。"),
        "web_models_cannot": ("This model cannot be activated: {value}", "无法启用此模型：{value}"),
        "web_models_method_forest": ("Random forest", "随机森林"),
        "web_models_method_lightgbm": ("LightGBM", "LightGBM 梯度提升树"),
        "web_models_method_logistic": ("Logistic regression", "逻辑回归"),
        "web_models_method_tree": ("Decision tree", "决策树"),
        "web_models_method_mlp": ("Neural network (MLP)", "神经网络（MLP）"),
        "web_models_method_t_learner": ("T-learner", "T-learner 双模型"),
        "web_models_method_s_learner": ("S-learner", "S-learner 单模型"),
        "web_models_method_x_learner": ("X-learner", "X-learner 交叉学习"),
        "web_models_method_class_transformation": ("Class transformation", "类别转换法"),
        "web_models_method_bgnbd": ("BG/NBD + Gamma-Gamma", "BG/NBD + Gamma-Gamma"),
        "web_models_method_pareto": ("Pareto/NBD + Gamma-Gamma", "Pareto/NBD + Gamma-Gamma"),
        "web_models_method_kmeans": ("k-means", "K 均值聚类"),
        "web_models_method_rfm": ("RFM", "RFM 分层"),
        "web_models_method_gmm": ("Gaussian mixture", "高斯混合"),
        "web_models_method_hierarchical": ("Hierarchical", "层次聚类"),
        "web_models_method_som": ("Self-organising map", "自组织映射"),
        "web_models_method_hybrid": ("Hybrid blend", "混合推荐"),
        "web_models_method_popularity": ("Popularity", "热门商品"),
        "web_models_method_itemknn": ("Item kNN", "物品近邻"),
        "web_models_method_userknn": ("User kNN", "用户近邻"),
        "web_models_method_als": ("ALS matrix factorisation", "ALS 矩阵分解"),
        "web_models_method_bpr": ("BPR", "BPR 排序学习"),
        "web_models_method_ease": ("EASE", "EASE 线性模型"),
        "web_models_method_content": ("Content-based", "基于内容"),
    }
)


def method_label(t: Callable[[str], str], method: str) -> str:
    """A model's method in words (the method's own name when there are none)."""
    key = f"web_models_method_{method}"
    label = t(key)
    return method if label == key else label


#: The kinds in the order the page shows them.
KIND_ORDER = ("recommender", "propensity", "churn", "uplift", "clv", "segment")


def _get(d: Any, *path: str) -> Any:
    """``d[p0][p1]…``, or None where a step is missing."""
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _rec_row(record: ModelRecord, evaluation: dict | None) -> dict[str, Any] | None:
    """This recommender's row of the latest offline evaluation (by its method), if any."""
    models = (evaluation or {}).get("models") or {}
    return models.get(record.method) or models.get(record.name)


def headline(
    record: ModelRecord, evaluation: dict | None, t: Callable[[str], str]
) -> list[tuple[str, Any, str]]:
    """A model's headline metrics as (label, value, number kind for :func:`fmt`)."""
    m = record.metrics
    if record.kind in ("propensity", "churn"):
        test = m.get("test_calibrated") or {}
        return [
            (t("web_models_auc"), test.get("roc_auc"), "ratio"),
            (t("web_models_log_loss"), test.get("log_loss"), "ratio"),
        ]
    if record.kind == "uplift":
        test = _get(m, "comparison", m.get("best") or record.method, "test") or {}
        return [
            (t("web_models_qini"), test.get("qini_auc"), "ratio"),
            (t("web_models_auuc"), test.get("auuc"), "ratio"),
        ]
    if record.kind == "recommender":
        row = _rec_row(record, evaluation) or {}
        k = (evaluation or {}).get("k", 10)
        ndcg = row.get("ndcg")
        if ndcg is None:  # the blend keeps its own validation score
            ndcg = _get(m, "validation", "ndcg@10")
            k = 10
        return [
            (t("web_models_ndcg").format(k=k), ndcg, "ratio"),
            (t("web_models_recall").format(k=k), row.get("recall"), "ratio"),
            (t("web_models_coverage"), row.get("coverage"), "pct"),
        ]
    if record.kind == "segment":
        return [
            (t("web_models_silhouette"), m.get("silhouette"), "ratio"),
            (t("web_models_stability"), m.get("stability_ari"), "ratio"),
            (t("web_models_segments"), record.info.get("segments"), "int"),
        ]
    if record.kind == "clv":
        return [
            (t("web_models_loglik"), m.get("log_likelihood"), "float"),
            (t("web_models_customers"), m.get("customers"), "int"),
        ]
    return []


def _groups(records: list[ModelRecord], evaluation: dict | None, t: Translator) -> list[dict]:
    groups = []
    kinds = [k for k in KIND_ORDER if any(r.kind == k for r in records)]
    kinds += sorted({r.kind for r in records} - set(kinds))
    for kind in kinds:
        rows = [r for r in records if r.kind == kind]
        metrics = [headline(r, evaluation, t) for r in rows]
        groups.append(
            {
                "kind": kind,
                "label": t(f"web_models_kind_{kind}"),
                "columns": [label for label, _, _ in metrics[0]] if metrics else [],
                "models": [
                    {
                        "record": r,
                        "method": method_label(t, r.method),
                        "metrics": [(v, f) for _, v, f in ms],
                    }
                    for r, ms in zip(rows, metrics, strict=True)
                ],
            }
        )
    return groups


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    t = Translator(lang_of(request))
    records = ws.models.list()
    evaluation = (
        latest_evaluation(ws.store) if any(r.kind == "recommender" for r in records) else None
    )
    return render(request, "models.html", session, groups=_groups(records, evaluation, t))


def _params(record: ModelRecord) -> list[tuple[str, str]]:
    """A model's parameters as text, long values cut."""
    out = []
    for k, v in record.params.items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        out.append((str(k), text if len(text) <= 160 else text[:159] + "…"))
    return out


@router.get("/models/{model_id}", response_class=HTMLResponse)
def model_page(request: Request, model_id: str) -> Response:
    session = signed_in(request)
    ws = get_state(request).readers.get()
    lang = lang_of(request)
    t = Translator(lang)
    try:
        record = ws.models.get(model_id)
    except NotFoundError:
        return problem(
            request, session, 404, "web_models_no_such_model", value=model_id[:200], back="/models"
        )
    evaluation = latest_evaluation(ws.store) if record.kind == "recommender" else None
    view: dict[str, Any] = {"cards": [], "note": None, "compare": None, "compare_title": None}
    charts: list[str] = []
    m = predict.model_view(record)
    if record.kind in ("propensity", "churn") and "test_calibrated" in record.metrics:
        view["cards"] = predict.classifier_cards(t, m)
        view["note"] = predict.classifier_protocol(t, m)
        view["compare_title"] = t("web_models_compare_classifiers")
        view["compare"] = _compare(predict.classifier_comparison(m), t)
        charts = predict.classifier_charts(t, m)
    elif record.kind == "uplift" and "comparison" in record.metrics:
        view["note"] = predict.uplift_note(t, m)
        view["compare_title"] = t("web_models_compare_uplift")
        view["compare"] = _compare(predict.uplift_comparison(m), t)
        charts = predict.uplift_charts(t, m)
    elif record.kind == "clv" and "total_clv" in record.metrics:
        values = predict_read.score_values(ws.store, "clv")
        view["cards"] = predict.clv_cards(t, m, values)
        view["note"] = t("web_models_clv_scores") if len(values) else None
        charts = predict.clv_charts(t, values)
    elif record.kind == "recommender" and evaluation is not None:
        view["note"] = recommend.comparison_note(t, evaluation)
        view["compare_title"] = t("web_models_compare_recs")
        frame = recommend.comparison_table(evaluation).round(4)
        view["compare"] = table(
            frame,
            columns={"model": t("web_models_model")}
            | dict(recommend.METRIC_LABELS)
            | {"coverage": t("web_models_coverage")},
        )
        view["method_note"] = t("web_models_this_method").format(m=record.method)
        charts = recommend.comparison_charts(t, evaluation)
    # The header names the method, and the headline holds the AUC: not twice.
    said = {label for label, _, _ in headline(record, evaluation, t)} | {t("pred_best")}
    view["cards"] = [(label, v) for label, v in view["cards"] if label not in said]
    info = [
        (t(f"web_models_{k}"), v)
        for k, v in record.info.items()
        if k in ("users", "items", "interactions") and isinstance(v, int | float)
    ]
    return render(
        request,
        "model.html",
        session,
        record=record,
        kind_label=t(f"web_models_kind_{record.kind}"),
        method=method_label(t, record.method),
        headline=headline(record, evaluation, t),
        view=view,
        charts=charts,
        info=info,
        params=_params(record),
        no_evaluation=record.kind == "recommender" and evaluation is None,
    )


def _compare(frame: Any, t: Translator) -> str:
    """A comparison table of the report's (metric names as they are, the model column named
    in the page's language)."""
    return table(
        frame.round(4), columns={c: c for c in frame.columns} | {"model": t("web_models_model")}
    )


@router.post("/models/{model_id}/activate")
async def activate(request: Request, model_id: str) -> Response:
    got = await admin_form(request)
    if isinstance(got, Response):
        return got
    session, fields = got
    state = get_state(request)
    try:
        record = await asyncio.wrap_future(state.run_write(lambda ws: ws.models.activate(model_id)))
    except NotFoundError as exc:
        known = True
        try:
            state.readers.get().models.get(model_id)
        except NotFoundError:
            known = False
        if not known:
            return problem(
                request, session, 404, "web_models_no_such_model", value=model_id[:200],
                back="/models",
            )  # fmt: skip
        return problem(
            request, session, 409, "web_models_cannot", value=str(exc), title="web_refused",
            back=f"/models/{quote(model_id, safe='')}",
        )  # fmt: skip
    if record.kind == "recommender":  # the server serves the newly active recommender
        await asyncio.to_thread(state.recs.refresh)
    target = (
        local(fields.get("next")) if fields.get("next") else f"/models/{quote(model_id, safe='')}"
    )
    return RedirectResponse(target, status_code=303)


__all__ = ["headline", "method_label", "router"]
