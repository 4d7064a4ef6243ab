"""Single commands: ``clean``, ``status``, ``synth``, ``demo``, ``report``."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from jingzhun.cli.common import Globals, JsonOpt, err, out, print_frame, print_json, steps, text

LangOpt = Annotated[str, typer.Option("--lang", help="Report language: en or zh.")]


def clean(
    ctx: typer.Context,
    remove: Annotated[
        str | None,
        typer.Option(
            "--remove",
            help="Move flagged events to the quarantine: outlier_order,bot_burst,content_duplicate.",
        ),
    ] = None,
    no_flag: Annotated[
        bool, typer.Option("--no-flag", help="Report only; do not write event_flags.")
    ] = False,
    method: Annotated[
        str | None, typer.Option("--method", help="Outlier test on log order value: mad or iqr.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.0,
            help="Modified z (mad, default 3.5) or IQR multiple (iqr, default 3).",
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst",
            min=1,
            help="Events per minute from one visitor that make a burst (default 30).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cleaning report: outlier orders, bot-like bursts, duplicates, missing values. Flags; deletes nothing unless --remove (with --engine spark: on the lake --db names, without --remove)."""
    g: Globals = ctx.obj
    if method is not None and method not in ("mad", "iqr"):
        from jingzhun.errors import InputError

        raise InputError(f"--method {method!r} is unknown", hint="use mad or iqr")
    kinds = tuple(k.strip() for k in remove.split(",") if k.strip()) if remove else ()
    options = {
        "outlier_method": method,
        "outlier_threshold": threshold,
        "burst_events_per_minute": burst,
    }
    if g.spark():
        from jingzhun.config import load_settings
        from jingzhun.ingest.clean import check_clean, clean_on_lake, run_settings

        settings = run_settings(load_settings(g.config).clean, **options)
        check_clean(settings, kinds, engine=g.engine)  # before Spark starts
        with steps() as say:
            say("starting Spark")
            with g.lake() as lake:
                say("cleaning report on Spark")
                report = clean_on_lake(lake, settings, flag=not no_flag)
    else:
        with g.workspace(create=not no_flag) as ws, steps() as say:
            say("cleaning report")
            report = ws.ingest.clean(flag=not no_flag, remove=kinds, **options)
    data = report.to_dict()
    if as_json:
        print_json(data)
        return
    o, b, d = data["outliers"], data["bursts"], data["duplicates"]
    out.print(
        f"[bold]Outlier orders[/] ({text(o['method'])}, threshold {text(o['threshold'])}): {o.get('outliers', 0):,} of {o.get('orders', 0):,} orders"
    )
    for ex in o.get("examples", []):
        out.print(f"  {text(ex['order_id'])}  {ex['value']:,.2f}  score {ex['score']:+.1f}")
    out.print(
        f"[bold]Bursts[/] (> {text(b['threshold_per_minute'])} events/minute): {b['actors']:,} visitors, {b['events']:,} events in {b['minutes']:,} minutes"
    )
    for ex in b.get("top", []):
        out.print(
            f"  {text(ex['actor'])}  {ex['events']:,} events, peak {text(ex['peak_per_minute'])}/min"
        )
    for kind, v in d.get("ingest", {}).items():
        out.print(
            f"[bold]Duplicates[/] {text(kind)}: {v['duplicates']:,} of {v['rows_read']:,} rows read ({v['rate']:.2%})"
        )
    out.print(
        f"[bold]Stored twice under different ids[/]: {d['content_duplicates']:,} events ({d['content_duplicate_rate']:.2%})"
    )
    missing = pd.DataFrame(data["missing"])
    missing = missing[missing["rate"] > 0].sort_values(["table", "rate"], ascending=[True, False])
    if not missing.empty:
        print_frame(missing, "Missing values")
    # Outliers are orders; flags and removals are events (an outlier order flags its lines).
    if data["flagged"]:
        out.print(
            "[bold]Flagged[/] in event_flags: "
            + ", ".join(
                text(_events(k, v, o.get("outliers", 0))) for k, v in data["flagged"].items()
            )
        )
    if data["removed"]:
        out.print(
            "[bold]Moved to the quarantine[/]: "
            + ", ".join(text(_events(k, v)) for k, v in data["removed"].items())
        )


def _events(flag: str, n: int, orders: int | None = None) -> str:
    """``n`` events of ``flag`` with their unit (order lines for outlier orders, else events),
    as plain text."""
    if flag != "outlier_order":
        return f"{flag} {n:,} event{'' if n == 1 else 's'}"
    of = f" (of {orders:,} outlier order{'' if orders == 1 else 's'})" if orders else ""
    return f"{flag} {n:,} order line{'' if n == 1 else 's'}{of}"


def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What the store holds: row counts, time span, events by type, quarantine."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        s = ws.summary()
    if as_json:
        print_json(s)
        return
    out.print(f"[bold]{text(s['store'])}[/] (schema {text(s['schema_version'])})")
    print_frame(pd.DataFrame([{"table": k, "rows": v} for k, v in s["tables"].items()]))
    if s["events_from"]:
        out.print(f"Events from {text(s['events_from'])} to {text(s['events_to'])}")
        print_frame(pd.DataFrame([{"event": k, "rows": v} for k, v in s["events_by_type"].items()]))
        out.print(
            f"Anonymous events: {s['anonymous_events']:,}, of which {s['anonymous_events_stitched']:,} stitched to a known user"
        )
    if s["quarantine_open"]:
        out.print(
            f"[yellow]{s['quarantine_open']:,} rows wait in the quarantine[/]: jingzhun quarantine list"
        )


def synth(
    ctx: typer.Context,
    users: Annotated[
        int, typer.Option("--users", "-u", help="Registered users to simulate.")
    ] = 20_000,
    items: Annotated[
        int | None,
        typer.Option("--items", help="Catalogue size (default: users / 10, 200 to 50,000)."),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Days of history.")] = 365,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: equal seeds give equal data.")
    ] = 0,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Last day of the history, YYYY-MM-DD (default 2026-10-31)."),
    ] = None,
    to: Annotated[
        str, typer.Option("--out", "-o", help="Folder for events/users/items.parquet and truth/.")
    ] = "shop",
    segment: Annotated[
        bool,
        typer.Option(
            "--segment",
            help="Also write segment.jsonl.gz: the events and users as Segment messages.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Simulate a shop: events, users (with PII), items, a past campaign, and the ground truth."""
    from jingzhun.config import resolve_db_path
    from jingzhun.outputs import check_output_dir
    from jingzhun.synth import SynthConfig, simulate
    from jingzhun.synth.shop import parse_end

    g: Globals = ctx.obj
    # Before the simulation, not after it; never the store's own files or model folder.
    # Text, not a Path option: Typer makes --out '' the working folder ('.').
    check_output_dir(to, store_path=resolve_db_path(g.db))
    config = SynthConfig(
        users=users, items=items, days=days, seed=seed, **({"end": parse_end(end)} if end else {})
    )
    with steps() as say:
        data = simulate(config, step=say)
        say("writing Parquet files" + (" and the Segment archive" if segment else ""))
        files = data.write(to, segment=segment)
    if as_json:
        print_json({"files": files, "stats": data.stats})
        return
    st = data.stats
    out.print(
        f"Simulated {st['users']:,} users, {st['anonymous_visitors']:,} anonymous visitors, {st['items']:,} items, {st['events']:,} events ({st['orders']:,} orders) from {text(st['window'][0])} to {text(st['window'][1])}"
    )
    out.print(
        f"Wrote {text(to)}/events.parquet, users.parquet, items.parquet, campaigns.parquet; ground truth in {text(to)}/truth/"
    )


def demo(
    users: Annotated[int, typer.Option("--users", "-u", help="Users to simulate.")] = 20_000,
    to: Annotated[
        str, typer.Option("--out", "-o", help="Folder for the data, the store and the report.")
    ] = "jingzhun-demo",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    lang: LangOpt = "en",
    as_json: JsonOpt = False,
) -> None:
    """Simulate a shop and run every stage on it; ends with the HTML report."""
    from jingzhun.demo import run_demo
    from jingzhun.outputs import check_output_dir

    folder = check_output_dir(to)  # before minutes of work; text, so '' is not '.'
    with steps() as say:
        result = run_demo(folder, users=users, seed=seed, lang=lang, step=say)
    if as_json:
        print_json(result)
        return
    s = result["summary"]
    ev = result["ingest"]["events"]
    for name, secs in result["seconds"].items():
        err.print(f"  {text(name)}: {secs:.1f}s")
    out.print(
        f"Simulated {result['simulated']['users']:,} users and {result['simulated']['events']:,} event rows (about 1% dirty on purpose)."
    )
    out.print(
        f"Ingested events: {ev['inserted']:,} stored, {ev['duplicates']:,} duplicates skipped, {ev['quarantined']:,} quarantined; {s['tables']['identities']:,} anonymous ids stitched to users."
    )
    c = result["cleaning"]
    out.print(
        f"Cleaning report: {c['outlier_orders']:,} outlier orders, {c['burst_visitors']:,} bot-like visitors flagged."
    )
    pr = result["profiles"]
    segments = pr["tags"].get("rfm_segment", 0)
    out.print(
        f"Profiles: {pr['users']:,} users as of {text(pr['as_of'][:19])}; {segments:,} customers in RFM segments."
    )
    km = result["segments"]["behaviour"]
    out.print(
        f"Segments: k-means chose {km['segments']:,} behaviour segments "
        f"(silhouette {km['silhouette']:.2f}, bootstrap stability {km['stability_ari']:.2f}): "
        + "; ".join(text(label) for label in km["labels"].values())
    )
    rec = result["recommend"]
    best = rec["best_offline"]
    out.print(
        f"Recommendations: {rec['rows']:,} rows from {text(rec['model'])}; offline (leave-last-out) the best model was "
        f"{text(best)} with nDCG@10 {rec['compared'][best]['ndcg']:.3f} against {rec['compared']['popularity']['ndcg']:.3f} for popularity."
    )
    if rec["example"]:
        ex = rec["example"]
        first = ex["items"][0]
        out.print(
            f"  e.g. {text(ex['user_id'])}: {text(first['title'] or first['item_id'])} — {text(first['explanation'])}"
        )
    pred = result["predict"]
    prop, up = pred["propensity"], pred["uplift"]
    out.print(
        f"Predictions: next-30-day buyers, best model {text(prop['best'])} (test ROC AUC "
        f"{prop['test']['roc_auc']:.3f}, lift@10% {prop['test']['lift_10']:.2f}); churn AUC "
        f"{pred['churn']['test_auc']:.3f}; expected 12-month CLV {pred['clv']['total_clv']:,.0f} "
        f"over {pred['clv']['customers']:,} customers."
    )
    truth = up["test"].get("true_correlation") or {}
    out.print(
        f"  Uplift: {text(up['best'])} on the past campaign, Spearman {truth.get('spearman', float('nan')):.2f} "
        f"with the true uplift; {up['worth_messaging']:,} users worth a message (uplift x margin > cost)."
    )
    out.print(f"Store: {text(result['store'])}")
    out.print(
        "Serve it (REST API, Segment tracking, live profiles; docs/server.md) and open the "
        "dashboard at http://127.0.0.1:8000/ (docs/dashboard.md): "
        f"jingzhun --db {text(result['store'])} apikey create --scope admin --name me && "
        f"jingzhun --db {text(result['store'])} serve"
    )
    out.print(f"[bold green]Report: {text(Path(result['report']).resolve())}[/]")


def report(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--out", "-o", help="HTML file to write.")] = "report.html",
    lang: LangOpt = "en",
    as_json: JsonOpt = False,
) -> None:
    """Write the HTML report of what the store holds."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws, steps(not as_json) as say:
        say("building the report")
        path = ws.report(to, lang=lang)
    if as_json:
        print_json(report_summary(path, lang))
        return
    out.print(f"Report: {text(path.resolve())}")


#: The report's table of contents (``report.html.j2``): one link per section it holds.
_CONTENTS = re.compile(r"<nav>(.*?)</nav>", re.S)
_ENTRY = re.compile(r'<a href="#([^"]*)">(.*?)</a>', re.S)


def report_summary(path: Path, lang: str) -> dict[str, object]:
    """What ``report --json`` prints: the file written, its size, and the sections it holds
    (key and title, in order) as its own table of contents lists them."""
    page = path.read_text(encoding="utf-8")
    contents = _CONTENTS.search(page)
    entries = _ENTRY.findall(contents.group(1)) if contents else []
    return {
        "path": str(path.resolve()),
        "lang": lang,
        "bytes": path.stat().st_size,
        "sections": [{"key": html.unescape(k), "title": html.unescape(t)} for k, t in entries],
    }
