"""The predict stage's report section: model comparisons, ROC, gains, calibration, Qini,
the targeting profit curve, CLV and the score distributions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jingzhun.predict import read as predict_read
from jingzhun.report.html import cards, figure, heading, note, table
from jingzhun.report.i18n import Translator, register
from jingzhun.report.registry import Section, section

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.workspace import Workspace

register(
    {
        "predictions": ("Predictions", "预测"),
        "pred_target_propensity": ("Purchase propensity", "购买倾向"),
        "pred_target_churn": ("Churn", "流失预警"),
        "pred_target_uplift": (
            "Uplift (who buys because of a message)",
            "增益模型（因营销而购买的用户）",
        ),
        "pred_target_clv": ("Customer lifetime value", "客户终身价值"),
        "pred_best": ("Chosen model", "选用模型"),
        "pred_test_auc": ("Test ROC AUC", "测试集 ROC AUC"),
        "pred_lift": ("Lift in the top 10%", "前 10% 提升度"),
        "pred_ece": ("Calibration error", "校准误差"),
        "pred_protocol": (
            "Time-based split: features are profiles as of each cutoff, labels the {h:g} days after; trained on {train}, chosen and calibrated on {validation}, tested on {test}. Base rate on test {base:.1%}.",
            "按时间划分：特征为各截止时点的画像，标签为其后 {h:g} 天；训练截止 {train}，验证（选模与校准）截止 {validation}，测试截止 {test}。测试集正例率 {base:.1%}。",
        ),
        "pred_compare": ("Classifiers compared", "分类器对比"),
        "pred_roc": ("ROC curve of the chosen model (test)", "选用模型的 ROC 曲线（测试集）"),
        "pred_gains": ("Cumulative gains (test)", "累积增益曲线（测试集）"),
        "pred_calibration": (
            "Calibration (test): predicted against observed",
            "校准曲线（测试集）：预测与实际",
        ),
        "pred_share": ("Share of users contacted", "触达用户比例"),
        "pred_captured": ("Share of positives captured", "覆盖的正例比例"),
        "pred_predicted": ("Predicted probability", "预测概率"),
        "pred_observed": ("Observed rate", "实际比例"),
        "pred_random": ("Random", "随机"),
        "pred_qini": ("Qini curve (test)", "Qini 曲线（测试集）"),
        "pred_oracle": ("Oracle (true uplift)", "理想排序（真实增益）"),
        "pred_incremental": ("Incremental buyers", "增量购买人数"),
        "pred_profit": (
            "Targeting profit by share targeted (test)",
            "按触达比例的增量利润（测试集）",
        ),
        "pred_expected": ("Expected", "预期"),
        "pred_observed_profit": ("Observed", "实测"),
        "pred_uplift_note": (
            "Conversion {treat:.2%} treated, {ctrl:.2%} control ({n} users, {window:g}-day window). A message pays where uplift x margin > cost: best share {share:.0%}.",
            "转化率：实验组 {treat:.2%}，对照组 {ctrl:.2%}（{n} 位用户，{window:g} 天窗口）。增益 x 毛利 > 成本 时值得触达：最佳触达比例 {share:.0%}。",
        ),
        "pred_scores": ("Scores written", "已写入的评分"),
        "pred_clv_total": ("Expected CLV, all customers", "全部客户预期终身价值"),
        "pred_clv_mean": ("Mean CLV", "平均终身价值"),
        "pred_clv_hist": ("Expected CLV per customer", "客户预期终身价值分布"),
        "pred_fpr": ("False positive rate", "假正例率"),
        "pred_tpr": ("True positive rate", "真正例率"),
        "pred_profit_axis": ("Incremental profit", "增量利润"),
        "pred_clv_axis": ("Expected CLV", "预期终身价值"),
        "pred_customers": ("Customers fitted", "参与拟合的客户"),
        "pred_customers_axis": ("Customers", "客户数"),
        "score_kind": ("Score", "评分"),
        "users_n": ("Users", "用户数"),
        "mean": ("Mean", "均值"),
    }
)


@section(100)
def predictions(ws: Workspace, t: Translator) -> Section | None:
    report = ws.predict_report()
    if not report["models"] and not report["scores"]:
        return None
    body = ""
    for target in ("propensity", "churn"):
        if target in report["models"]:
            body += _classifier(t, target, report["models"][target])
    if "uplift" in report["models"]:
        body += _uplift(t, report["models"]["uplift"])
    if "clv" in report["models"]:
        body += _clv(ws, t, report["models"]["clv"])
    if report["scores"]:
        rows = [
            {
                "score": k,
                "users": v["users"],
                "mean": v["mean"],
                "p10": v["p10"],
                "p50": v["p50"],
                "p90": v["p90"],
            }
            for k, v in report["scores"].items()
        ]
        import pandas as pd

        body += heading(t("pred_scores")) + table(
            pd.DataFrame(rows).round(4),
            columns={"score": t("score_kind"), "users": t("users_n"), "mean": t("mean")},
        )
    return Section("predictions", t("predictions"), body)


def model_view(record: Any) -> dict[str, Any]:
    """A predict model of the registry (a :class:`~jingzhun.store.registry.ModelRecord`) as
    the section's functions take it: the shape :meth:`Predict.report` gives the active ones
    (``model_id``, ``model`` — the chosen method —, ``horizon_days``, ``cutoffs``, ``metrics``),
    so that any model, active or not, is drawn the same way."""
    return {
        "model_id": record.model_id,
        "model": record.method,
        "horizon_days": record.info.get("horizon_days"),
        "as_of": None if record.as_of is None else record.as_of.isoformat(sep=" "),
        "cutoffs": record.info.get("cutoffs"),
        "metrics": record.metrics,
    }


def _classifier(t: Translator, target: str, m: dict[str, Any]) -> str:
    body = heading(t(f"pred_target_{target}"))
    body += cards(classifier_cards(t, m))
    protocol = classifier_protocol(t, m)
    if protocol:
        body += note(protocol)
    body += heading(t("pred_compare")) + table(
        classifier_comparison(m).round(4), columns={"model": t("model")}
    )
    return body + "".join(classifier_charts(t, m))


def classifier_cards(t: Translator, m: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline of a propensity or churn model (``m`` as :func:`model_view` gives it):
    the chosen classifier, its test ROC AUC, lift in the top 10% and calibration error."""
    test = m["metrics"]["test_calibrated"]
    return [
        (t("pred_best"), f"{m['model']} ({m['model_id']})"),
        (t("pred_test_auc"), f"{test['roc_auc']:.3f}"),
        (t("pred_lift"), f"{test['lift_10']:.2f}x"),
        (t("pred_ece"), f"{test['ece']:.3f}"),
    ]


def classifier_protocol(t: Translator, m: dict[str, Any]) -> str | None:
    """How a classifier was trained and tested (cutoffs, horizon, the test's base rate), in
    words; None when the model does not record its cutoffs."""
    cut, metrics = m.get("cutoffs"), m["metrics"]
    if not cut or m.get("horizon_days") is None:
        return None
    return t("pred_protocol").format(
        h=m["horizon_days"],
        train=", ".join(c[:10] for c in cut["train"]),
        validation=cut["validation"][:10],
        test=cut["test"][:10],
        base=metrics["base_rates"]["test"],
    )


def classifier_comparison(m: dict[str, Any]) -> pd.DataFrame:
    """Every classifier a propensity or churn training tried, one row each: AUC on
    validation, then AUC, PR AUC, log loss, Brier, lift, gain and calibration error on test."""
    import pandas as pd

    rows = []
    for name, parts in m["metrics"]["comparison"].items():
        v, te = parts["validation"], parts.get("test", {})
        rows.append(
            {
                "model": name,
                "val AUC": v["roc_auc"],
                "AUC": te.get("roc_auc"),
                "PR AUC": te.get("pr_auc"),
                "log loss": te.get("log_loss"),
                "Brier": te.get("brier"),
                "lift@10%": te.get("lift_10"),
                "lift@20%": te.get("lift_20"),
                "gain@20%": te.get("gain_20"),
                "ECE": te.get("ece"),
            }
        )
    return pd.DataFrame(rows)


def classifier_charts(t: Translator, m: dict[str, Any]) -> list[str]:
    """The chosen classifier's test curves as chart fragments: ROC, cumulative gains and
    calibration (none when the model kept no curves)."""
    import plotly.graph_objects as go

    curves = m["metrics"].get("curves") or {}
    if not curves:
        return []
    out = []
    roc = curves["roc"]
    fig = go.Figure(
        [
            go.Scatter(x=roc["fpr"], y=roc["tpr"], name=m["model"], mode="lines"),
            go.Scatter(
                x=[0, 1], y=[0, 1], name=t("pred_random"), mode="lines", line={"dash": "dot"}
            ),
        ]
    )
    fig.update_layout(title=t("pred_roc"), xaxis_title=t("pred_fpr"), yaxis_title=t("pred_tpr"))
    out.append(figure(fig, height=340))
    gains = curves["gains"]
    fig = go.Figure(
        [
            go.Scatter(x=gains["share"], y=gains["captured"], name=m["model"], mode="lines"),
            go.Scatter(
                x=[0, 1], y=[0, 1], name=t("pred_random"), mode="lines", line={"dash": "dot"}
            ),
        ]
    )
    fig.update_layout(
        title=t("pred_gains"), xaxis_title=t("pred_share"), yaxis_title=t("pred_captured")
    )
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(tickformat=".0%")
    out.append(figure(fig, height=340))
    cal = curves["calibration"]
    top = max(max(cal["predicted"]), max(cal["observed"]))
    fig = go.Figure(
        [
            go.Scatter(
                x=cal["predicted"], y=cal["observed"], name=m["model"], mode="lines+markers"
            ),
            go.Scatter(x=[0, top], y=[0, top], name="y = x", mode="lines", line={"dash": "dot"}),
        ]
    )
    fig.update_layout(
        title=t("pred_calibration"),
        xaxis_title=t("pred_predicted"),
        yaxis_title=t("pred_observed"),
    )
    out.append(figure(fig, height=340))
    return out


def _uplift(t: Translator, m: dict[str, Any]) -> str:
    body = heading(t("pred_target_uplift"))
    body += note(uplift_note(t, m))
    body += table(uplift_comparison(m).round(4), columns={"model": t("model")})
    return body + "".join(uplift_charts(t, m))


def uplift_note(t: Translator, m: dict[str, Any]) -> str:
    """An uplift model's experiment in words: conversion treated and control, users, the
    window, and the share worth targeting."""
    metrics = m["metrics"]
    conv = metrics["conversion"]
    return t("pred_uplift_note").format(
        treat=conv["treatment"],
        ctrl=conv["control"],
        n=f"{sum(metrics['rows'].values()):,}",
        window=metrics["window_days"],
        share=metrics["policy"]["best_share"],
    )


def uplift_comparison(m: dict[str, Any]) -> pd.DataFrame:
    """Every uplift learner tried, one row each: Qini on validation, then Qini, AUUC and the
    uplift in the top 10% and 30% on test (and against the true uplift, when it is known)."""
    import pandas as pd

    rows = []
    for name, parts in m["metrics"]["comparison"].items():
        v, te = parts["validation"], parts["test"]
        row = {
            "model": name,
            "val Qini": v["qini_auc"],
            "Qini": te["qini_auc"],
            "AUUC": te["auuc"],
            "uplift@10%": te["uplift_at_10"],
            "uplift@30%": te["uplift_at_30"],
        }
        if "true_correlation" in te:
            row["Spearman (truth)"] = te["true_correlation"]["spearman"]
            row["oracle Qini"] = te["oracle_qini_auc"]
        rows.append(row)
    return pd.DataFrame(rows)


def uplift_charts(t: Translator, m: dict[str, Any]) -> list[str]:
    """An uplift model's test charts as fragments: the Qini curve (with the oracle's when the
    true uplift is known) and the targeting profit by share targeted."""
    import plotly.graph_objects as go

    charts = m["metrics"]["charts"]
    q = charts["qini"]
    traces = [go.Scatter(x=q["share"], y=q["model"], name=m["model"], mode="lines")]
    if "oracle" in q:
        traces.append(go.Scatter(x=q["share"], y=q["oracle"], name=t("pred_oracle"), mode="lines"))
    traces.append(
        go.Scatter(
            x=[0, 1],
            y=[0, q["model"][-1]],
            name=t("pred_random"),
            mode="lines",
            line={"dash": "dot"},
        )
    )
    fig = go.Figure(traces)
    fig.update_layout(
        title=t("pred_qini"), xaxis_title=t("pred_share"), yaxis_title=t("pred_incremental")
    )
    fig.update_xaxes(tickformat=".0%")
    out = [figure(fig, height=340)]
    p = charts["profit"]
    traces = [
        go.Scatter(x=p["share"], y=p["expected_profit"], name=t("pred_expected"), mode="lines")
    ]
    if "observed_profit" in p:
        traces.append(
            go.Scatter(
                x=p["share"],
                y=p["observed_profit"],
                name=t("pred_observed_profit"),
                mode="lines+markers",
            )
        )
    fig = go.Figure(traces)
    fig.update_layout(
        title=t("pred_profit"), xaxis_title=t("pred_share"), yaxis_title=t("pred_profit_axis")
    )
    fig.update_xaxes(tickformat=".0%")
    out.append(figure(fig, height=340))
    return out


def _clv(ws: Workspace, t: Translator, m: dict[str, Any]) -> str:
    values = predict_read.score_values(ws.store, "clv")
    body = heading(t("pred_target_clv"))
    body += cards(clv_cards(t, m, values))
    return body + "".join(clv_charts(t, values))


def clv_cards(t: Translator, m: dict[str, Any], values: pd.Series) -> list[tuple[str, str]]:
    """The headline of a CLV model: its purchase model, the expected CLV of all customers,
    the mean of ``values`` (the CLV scores) and the customers fitted."""
    metrics = m["metrics"]
    return [
        (t("pred_best"), f"{m['model']} + Gamma-Gamma"),
        (t("pred_clv_total"), f"{metrics['total_clv']:,.0f}"),
        (t("pred_clv_mean"), f"{values.mean():,.2f}" if len(values) else "-"),
        (t("pred_customers"), f"{metrics['customers']:,}"),
    ]


def clv_charts(t: Translator, values: pd.Series) -> list[str]:
    """The distribution of expected CLV per customer (``values``: the CLV scores, the top 1%
    folded into the last bar) as a chart fragment; none without scores."""
    import plotly.graph_objects as go

    if not len(values):
        return []
    fig = go.Figure(go.Histogram(x=values.clip(upper=values.quantile(0.99)).tolist(), nbinsx=40))
    fig.update_layout(
        title=t("pred_clv_hist"),
        xaxis_title=t("pred_clv_axis"),
        yaxis_title=t("pred_customers_axis"),
    )
    return [figure(fig, height=300)]
