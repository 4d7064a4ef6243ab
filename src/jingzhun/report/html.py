"""The HTML report: a self-contained file, charts included, readable offline.

The building blocks sections write with (tables, cards, charts) and the document that holds
them. Sections are registered in :data:`jingzhun.report.registry.SECTIONS` (importing
:mod:`jingzhun.report` registers every stage's); each builds its HTML from the Workspace and
returns ``None`` when it has nothing to show (an empty store, a stage not yet run). Charts are
Plotly figures; Plotly's JavaScript is inlined once, so the report needs no network.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from jingzhun.outputs import atomic_write, check_output_path
from jingzhun.report.i18n import Translator
from jingzhun.report.registry import SECTIONS

if TYPE_CHECKING:
    from jingzhun.workspace import Workspace


# -- building blocks --------------------------------------------------------------------------

PALETTE = [
    "#2f6fdf",
    "#e4572e",
    "#17a398",
    "#f3a712",
    "#8e44ad",
    "#29335c",
    "#a8c686",
    "#db2b39",
    "#669bbc",
    "#c08552",
]


def figure(fig: Any, *, height: int = 360) -> str:
    """A Plotly figure as an HTML fragment (the library itself is included once per report)."""
    import plotly.io as pio

    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        template="plotly_white",
        colorway=PALETTE,
        font={
            "family": "-apple-system, 'Segoe UI', 'PingFang SC', 'Microsoft YaHei', sans-serif",
            "size": 12,
        },
        legend={"orientation": "h", "y": -0.2},
    )
    return (
        '<div class="chart">'
        + pio.to_html(
            fig,
            include_plotlyjs=False,
            full_html=False,
            config={"displaylogo": False, "responsive": True},
        )
        + "</div>"
    )


def table(
    frame: pd.DataFrame,
    *,
    columns: dict[str, str] | None = None,
    max_rows: int = 50,
    numeric: Sequence[str] = (),
) -> str:
    """An HTML table of ``frame`` (``columns`` maps column names to headers)."""
    if columns:
        frame = frame[list(columns)].rename(columns=columns)
    frame = frame.head(max_rows)
    num = set(numeric) | {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(
        f"<th{' class=num' if c in num else ''}>{html.escape(str(c))}</th>" for c in frame.columns
    )
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for c, v in zip(frame.columns, row, strict=True):
            text = fmt(v)
            cells.append(f"<td{' class=num' if c in num else ''}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    if isinstance(v, bool):
        return "✓" if v else "✗"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) >= 1 or v == 0 else f"{v:.4g}"
    if isinstance(v, pd.Timestamp | datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def cards(items: Sequence[tuple[str, Any]]) -> str:
    inner = "".join(
        f'<div class="card"><div class="label">{html.escape(k)}</div><div class="value">{html.escape(fmt(v))}</div></div>'
        for k, v in items
    )
    return f'<div class="cards">{inner}</div>'


def heading(text: str) -> str:
    return f"<h3>{html.escape(text)}</h3>"


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


# -- the document -----------------------------------------------------------------------------


def build_report(ws: Workspace, out: Path, *, lang: str = "en", title: str | None = None) -> Path:
    """Render every registered section with something to show into ``out`` (written
    atomically). The sections are those of :data:`~jingzhun.report.registry.SECTIONS`: every
    stage's, since importing this module imports :mod:`jingzhun.report`, which registers them."""
    import plotly.offline

    t = Translator(lang)
    # Before minutes of work; a missing folder is created (report --out zh/r.html).
    target = check_output_path(out, store_path=ws.path, create_parents=True, what="the report")
    ordered = [fn for _, fn in sorted(SECTIONS, key=lambda pair: pair[0])]
    built = [s for s in (fn(ws, t) for fn in ordered) if s is not None]
    env = Environment(
        loader=PackageLoader("jingzhun.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    page = env.get_template("report.html.j2").render(
        lang=lang,
        title=title or t("report_title"),
        t=t,
        sections=built,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        store=str(ws.path),
        plotly_js=plotly.offline.get_plotlyjs(),
    )
    with atomic_write(target, "w", encoding="utf-8") as fh:
        fh.write(page)
    return out
