"""The segment stage's report section: every active run, its portraits and pictures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jingzhun.errors import InputError
from jingzhun.report.html import cards, figure, heading, table
from jingzhun.report.i18n import Translator, register
from jingzhun.report.registry import Section, section
from jingzhun.segment import read as segment_read

if TYPE_CHECKING:
    from jingzhun.workspace import Workspace

register(
    {
        "segments": ("Segments", "用户分群"),
        "method": ("Method", "方法"),
        "n_segments": ("Segments", "分群数"),
        "silhouette": ("Silhouette", "轮廓系数"),
        "stability": ("Stability (bootstrap ARI)", "稳定性（自助法 ARI）"),
        "noise": ("Noise", "噪声占比"),
        "segment": ("Segment", "分群"),
        "name": ("Name", "名称"),
        "share": ("Share", "占比"),
        "revenue_share": ("Revenue share", "收入占比"),
        "top_categories": ("Top categories", "偏好品类"),
        "sizes": ("Segment sizes", "分群规模"),
        "heatmap": (
            "Traits per segment against the population (z-scores)",
            "各分群特征相对总体（z 分数）",
        ),
        "projection": (
            "Users on the first two principal components, by segment",
            "用户在前两个主成分上的分布（按分群）",
        ),
        "k_scan": ("Choosing k: silhouette by number of segments", "选择 k：各分群数的轮廓系数"),
        "umatrix": (
            "Self-organizing map: U-matrix (distance between neighbouring nodes)",
            "自组织映射：U 矩阵（相邻节点距离）",
        ),
        "run_line": (
            "Run {run} ({method}) on {users} users",
            "运行 {run}（{method}），{users} 位用户",
        ),
    }
)


@section(80)
def segments(ws: Workspace, t: Translator) -> Section | None:
    runs = segment_read.active_runs(ws.store, limit=4)
    if not runs:
        return None
    body = ""
    for run_id in runs:
        body += _run(ws, t, run_id)
    return Section("segments", t("segments"), body)


def _run(ws: Workspace, t: Translator, run_id: str) -> str:
    info = ws.segment(run_id)
    body = heading(
        t("run_line").format(run=run_id, method=info["method"], users=f"{info['users']:,}")
    )
    body += cards(run_cards(info, t))
    body += table(
        portrait_frame(info),
        columns={
            "segment": t("segment"),
            "label": t("name"),
            "users": t("users_n"),
            "share": t("share"),
            "revenue_share": t("revenue_share"),
            "top": t("top_categories"),
        },
    )
    return body + "".join(run_charts(ws, t, info))


def run_cards(info: dict[str, Any], t: Translator) -> list[tuple[str, Any]]:
    """A run's headline figures: method, number of segments and the quality measures."""
    m = info["metrics"]
    return [
        (t("method"), info["method"]),
        (t("n_segments"), int(info["segments"])),
        (t("silhouette"), m.get("silhouette")),
        (t("stability"), m.get("stability_ari")),
        (t("noise"), m.get("noise_share")),
    ]


def portrait_frame(info: dict[str, Any]) -> pd.DataFrame:
    """One row per segment: code, name, users, share, revenue share, top categories."""
    return pd.DataFrame(
        [
            {
                "segment": p["segment"],
                "label": p["label"],
                "users": p["users"],
                "share": p["share"],
                "revenue_share": p["revenue_share"],
                "top": ", ".join(c for c, *_ in p["top_categories"]),
            }
            for p in info["portraits"]
        ],
        columns=["segment", "label", "users", "share", "revenue_share", "top"],
    )


def run_charts(ws: Workspace, t: Translator, info: dict[str, Any]) -> list[str]:
    """A run's pictures (the report's and the dashboard's): sizes, the trait z-score heatmap,
    the choice of k, the members on two principal components, a SOM's U-matrix."""
    import plotly.graph_objects as go

    out = []
    ports = info["portraits"]
    frame = portrait_frame(info)
    fig = go.Figure(go.Bar(x=frame["label"], y=frame["users"]))
    fig.update_layout(title=t("sizes"), xaxis_title=t("segment"), yaxis_title=t("users_n"))
    out.append(figure(fig, height=300))
    traits = [k for k in (ports[0]["traits"] if ports else {}) if k not in ("hour_sin", "hour_cos")]
    if traits:
        z = np.array([[p["traits"][k]["z"] or 0.0 for k in traits] for p in ports])
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=traits,
                y=[p["label"] for p in ports],
                zmid=0,
                colorscale="RdBu",
                reversescale=True,
                text=np.round(z, 2),
                texttemplate="%{text}",
                colorbar={"title": "z"},
            )
        )
        fig.update_layout(title=t("heatmap"))
        out.append(figure(fig, height=max(280, 60 + 40 * len(ports))))
    m = info["metrics"]
    scan = m.get("k_scan") or []
    if scan:
        fig = go.Figure(
            go.Scatter(
                x=[r["k"] for r in scan],
                y=[r.get("silhouette") for r in scan],
                mode="lines+markers",
            )
        )
        chosen = info["params"].get("k")
        if chosen:
            fig.add_vline(x=chosen, line_dash="dot")
        fig.update_layout(title=t("k_scan"), xaxis_title="k", yaxis_title=t("silhouette"))
        out.append(figure(fig, height=280))
    if info["method"] != "rfm":
        out.append(_projection(ws, t, info))
    if info["method"] == "som":
        seg = ws.segmenter(info["run_id"])
        if "umatrix" in seg.extra:
            fig = go.Figure(go.Heatmap(z=seg.extra["umatrix"], colorscale="Greys"))
            fig.update_layout(title=t("umatrix"), yaxis_scaleanchor="x")
            out.append(figure(fig, height=420))
    return [c for c in out if c]


def _projection(ws: Workspace, t: Translator, info: dict) -> str:
    """A PCA scatter of up to 4,000 members in the run's own transformed feature space: as
    kept with the run when it was fitted (``ws.segments.projection``), else (a run fitted
    before that was kept) from today's profiles."""
    import plotly.graph_objects as go
    from sklearn.decomposition import PCA

    kept = ws.segments.projection(info["run_id"])
    if len(kept) >= 3:
        df, xy = kept, kept[["x", "y"]].to_numpy(np.float64)
    else:
        seg = ws.segmenter(info["run_id"])
        try:
            df = segment_read.member_features(ws.store, info["run_id"], sample=4000, seed=7)
        except InputError:  # the profiles lost a trait the run used: no picture
            return ""
        if len(df) < 3:
            return ""
        Z = seg.pipe.transform(df[seg.features].to_numpy(np.float64))
        xy = (
            PCA(n_components=2, random_state=0).fit_transform(Z) if Z.shape[1] >= 2 else np.c_[Z, Z]
        )
    labels = {p["segment"]: p["label"] for p in info["portraits"]}
    fig = go.Figure()
    for code in sorted(df.segment.unique(), key=lambda s: (s == "noise", len(s), s)):
        pick = (df.segment == code).to_numpy()
        fig.add_trace(
            go.Scattergl(
                x=xy[pick, 0],
                y=xy[pick, 1],
                mode="markers",
                marker={"size": 4, "opacity": 0.6},
                name=labels.get(code, code),
            )
        )
    fig.update_layout(title=t("projection"), xaxis_title="PC1", yaxis_title="PC2")
    return figure(fig, height=460)
