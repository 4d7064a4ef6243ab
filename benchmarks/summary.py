"""The table of every benchmark's targets and whether the last run met them, written into
``docs/benchmarks.md`` between two markers (``make bench`` rewrites it after its run;
``python benchmarks/summary.py`` from the results already there).

It reads only ``benchmarks/results/<name>.json``: each criterion with its target, the figure
it was judged on and when that run was; the sections below the table give the baselines,
every repeat and the reasons.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "benchmarks.md"
START = "<!-- summary: written by benchmarks/summary.py from benchmarks/results; do not edit -->"
END = "<!-- end of summary -->"


#: Where each benchmark's result file holds the figure a criterion judges: a dotted path
#: (``[*]``: every element of a list), ``max:`` or ``median:`` of the values found. The
#: benchmarks compute ``met`` from these; tests/test_bench_summary.py checks every path
#: resolves in the committed results, so a benchmark that moves a figure is caught.
VALUES: dict[str, dict[str, str]] = {
    "synth": {
        "seconds": "result.seconds",
        "peak_rss_mb": "max:runs[*].peak_rss_mb",
        "events": "result.events",
    },
    "ingest": {
        "parquet_rows_per_s": "results.jingzhun_parquet.rows_per_s",
        "csv_rows_per_s": "results.jingzhun_csv.rows_per_s",
        "peak_rss_mb": "max:results.jingzhun_*.peak_rss_mb",
    },
    "ingest_logs": {
        "segment_messages_per_s": "segment_messages_per_s",
        "taobao_vs_csv": "taobao_vs_csv",
    },
    "profile": {
        "build_seconds": "results.jingzhun.build_seconds",
        "speedup_vs_pandas": "results.speedup_vs_pandas",
        "lookup_p99_ms": "results.jingzhun.lookup_ms.p99",
    },
    "segment": {
        "minibatch_auto_k_seconds": "results.minibatch_kmeans_auto_k.auto_k_seconds",
        "assign_one_ms": "results.minibatch_kmeans_auto_k.assign_ms.p99",
    },
    "recommend": {
        "als_fit_seconds": "results.ours.als_fit_seconds",
        "batch_top10_all_users_seconds": "results.ours.batch_top10_all_users_seconds",
        "peak_rss_mb": "results.ours.peak_rss_mb",
        "single_user_p99_ms": "results.ours.single_user_ms.p99",
        "itemknn_session_p99_ms": "results.itemknn_hybrid.itemknn_session_ms.p99",
        "hybrid_single_user_p99_ms": "results.itemknn_hybrid.hybrid_single_user_ms.p99",
    },
    "predict": {
        "bgnbd_fit_seconds": "results.clv.bgnbd.fit_seconds.median",
        "propensity_fit_1m_seconds": "results.propensity.fit_1m_ours.fit_seconds",
        "propensity_score_1m_seconds": "results.propensity.score_1m_ours.score_seconds",
        "propensity_score_with_reasons_1m_seconds": "results.propensity.score_1m_ours.score_with_reasons_seconds",
    },
    "server": {
        "ingest_events_per_s": "max:results.ingest[*].events_per_s",
        "recommendations_ms_p99": "results.recommendations_paced.ms_p99",
        "visible_ms_p99": "results.visibility.ms_p99",
    },
    "privacy": {
        "vault_overhead": "results.vault_overhead",
        "erase_s": "median:results.erase_command_seconds",
        "export_s": "median:results.export_command_seconds",
    },
    "scale": {
        "duckdb_core_faster_than_polars_core": "ratios.duckdb_core_over_polars_core",
        "spark_within_5x_of_duckdb_at_M": "ratios.spark_full_over_duckdb_without_activity",
        "exponent_jingzhun_duckdb_full_at_most_1.1": "exponents.profiles.jingzhun_duckdb_full",
        "exponent_spark_full_at_most_1.1": "exponents.profiles.spark_full",
    },
}


#: A criterion judged against a target of another name.
TARGETS: dict[str, dict[str, str]] = {
    "campaign": {"coverage_plain": "coverage", "coverage_cuped": "coverage"},
    "dashboard": {"demo": "demo_page_s", "one_million": "one_million_page_s"},
    "recommend": {
        "itemknn_session_p99_ms": "single_user_p99_ms",
        "hybrid_single_user_p99_ms": "single_user_p99_ms",
    },
    "predict": {"propensity_score_with_reasons_1m_seconds": "propensity_score_1m_seconds"},
    "scale": {
        "spark_within_5x_of_duckdb_at_M": "spark_within_x_of_duckdb_at_M",
        "exponent_jingzhun_duckdb_full_at_most_1.1": "exponent_at_most",
        "exponent_spark_full_at_most_1.1": "exponent_at_most",
    },
}


def _find(doc: Any, path: str) -> list[Any]:
    """The values at ``path`` in ``doc`` (``*``: every key or element there)."""
    found = [doc]
    for part in path.replace("[*]", ".*").split("."):
        nxt: list[Any] = []
        for node in found:
            if part == "*" and isinstance(node, list):
                nxt.extend(node)
            elif isinstance(node, dict):
                keys = [k for k in node if part.endswith("*") and k.startswith(part[:-1])]
                nxt.extend(node[k] for k in (keys or [part]) if k in node)
        found = nxt
    return [v for v in found if v is not None]


def value(doc: dict[str, Any], spec: str) -> Any:
    """The figure ``spec`` (a :data:`VALUES` entry) names in ``doc``; None if it is not there."""
    how, _, path = spec.rpartition(":")
    found = _find(doc, path)
    if not found:
        return None
    if isinstance(found[0], list):  # a list of runs
        found = found[0]
    if how == "max":
        return max(found)
    if how == "median":
        return statistics.median(found)
    return found[0]


def _criteria(doc: dict[str, Any]) -> list[tuple[str, Any, bool | None, Any]]:
    """(criterion, target, met, measured value) of one result: its ``met`` mapping, or the
    ``met`` flags of its parts (a dashboard's two stores)."""
    target = doc.get("target") or {}
    values = VALUES.get(str(doc.get("benchmark")), {})
    aliases = TARGETS.get(str(doc.get("benchmark")), {})
    met = doc.get("met")
    if not isinstance(met, dict):
        met = {k: v for k, v in doc.items() if isinstance(v, dict) and "met" in v}
    out = []
    for name, m in met.items():
        figure = value(doc, values[name]) if name in values else None
        if isinstance(m, dict):
            figure = m.get("value", m.get("slowest_page_s", figure))
            flags = m.get("met", m)
            if isinstance(flags, dict):  # one flag per method (segments: k per method)
                missed = [k for k, ok in flags.items() if not ok]
                figure = f"missed by {', '.join(missed)}" if missed else "all"
                flags = not missed
            m = flags
        out.append(
            (name, target.get(aliases.get(name, name)), m if isinstance(m, bool) else None, figure)
        )
    return out


def _cell(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, list):
        return "–".join(_cell(v) for v in x)
    return str(x).replace("|", "\\|")


def render(results: Path = RESULTS, names: list[str] | None = None) -> str:
    """The markdown table of ``results``' files (``names``: those benchmarks, in that order;
    default every ``<name>.json`` but dated copies such as ``scale-2026-12-07-1539.json``)."""
    if names is None:
        names = sorted(p.stem for p in results.glob("*.json") if p.stem.isidentifier())
    rows = [
        "| benchmark | measured (UTC) | criterion | target | measured | met |",
        "|---|---|---|---|---|---|",
    ]
    met_all = total = 0
    for name in names:
        path = results / f"{name}.json"
        if not path.exists():
            rows.append(f"| {name} | not run | | | | |")
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        when = str(doc.get("measured_at", ""))[:16].replace("T", " ")
        criteria = _criteria(doc)
        if not criteria:
            rows.append(f"| {name} | {when} | reference results, no target | | | |")
        for i, (criterion, target, met, value) in enumerate(criteria):
            mark = {True: "yes", False: "**no**", None: ""}[met]
            total += met is not None
            met_all += met is True
            first = f"{name} | {when}" if i == 0 else " | "
            rows.append(f"| {first} | {criterion} | {_cell(target)} | {_cell(value)} | {mark} |")
    head = f"{met_all} of {total} criteria met in the last run of each benchmark."
    return "\n".join([head, "", *rows])


def write(doc: Path = DOC, results: Path = RESULTS, names: list[str] | None = None) -> None:
    """Replace the table between the markers in ``doc`` (the markers must be there: a file
    without them is refused, not appended to)."""
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(
            f"error: {doc}: the summary markers are missing; put {START} and {END} where the table goes"
        )
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    body = render(results, names)
    doc.write_text(f"{before}{START}\n{body}\n{END}{after}", encoding="utf-8")


if __name__ == "__main__":
    write(names=sys.argv[1:] or None)
