"""``jingzhun quarantine list|show|export|replay|discard``"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jingzhun.cli.common import Globals, JsonOpt, frame_records, out, print_frame, print_json, text
from jingzhun.ingest.quarantine import Selection
from jingzhun.ingest.validate import parse_assignments

app = typer.Typer(help="Inspect, fix and replay rows that failed validation.", no_args_is_help=True)

BatchOpt = Annotated[str | None, typer.Option("--batch", "-b", help="Only rows of this batch.")]
IdOpt = Annotated[
    list[int] | None, typer.Option("--id", help="Only these quarantine ids. Repeatable.")
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", "-r", help="Only rows whose reason contains this text.")
]


def _selection(
    batch: str | None, ids: list[int] | None, reason: str | None, include_resolved: bool = False
) -> Selection:
    return Selection(
        batch_id=batch, ids=tuple(ids or ()), reason=reason, include_resolved=include_resolved
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Batches with quarantined rows, and the commonest reasons."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        batches = ws.ingest.quarantine.batches()
        reasons = ws.ingest.quarantine.reasons()
    if as_json:
        print_json({"batches": frame_records(batches), "reasons": frame_records(reasons)})
        return
    if batches.empty:
        out.print("The quarantine is empty.")
        return
    print_frame(batches, "Quarantined rows per batch")
    if not reasons.empty:
        print_frame(reasons, "Open rows by reason")


@app.command()
def show(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(help="Quarantine ids to show.", show_default=False)
    ] = None,
    batch: BatchOpt = None,
    reason: ReasonOpt = None,
    include_resolved: Annotated[
        bool, typer.Option("--all", help="Include rows already replayed or discarded.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most this many rows.")
    ] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Quarantined rows with their reason, source, record number and raw values."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        frame = ws.ingest.quarantine.rows(
            _selection(batch, ids, reason, include_resolved or bool(ids)), limit=limit
        )
    if as_json:
        records = frame_records(frame)
        for r in records:
            r["raw"] = json.loads(r["raw"])
        print_json({"rows": records})
        return
    if frame.empty:
        out.print("No quarantined rows match.")
        return
    for r in frame.itertuples(index=False):
        resolved = not (r.resolved_at is None or str(r.resolved_at) == "NaT")
        line_no = "" if r.line_no != r.line_no else int(r.line_no)
        out.print(
            f"[bold]#{r.quarantine_id:d}[/] {text(r.kind)} {text(r.source)}:{text(line_no)}  batch {text(r.batch_id)}"
            + (f"  [dim](resolved: {text(r.resolved_batch_id)})[/]" if resolved else "")
        )
        out.print(f"  [yellow]{text(r.reason)}[/]")
        out.print(f"  {text(r.raw)}")


@app.command()
def export(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--out", "-o", help="JSON Lines file to write.")],
    batch: BatchOpt = None,
    ids: IdOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write open rows to JSON Lines: edit each "row", then replay --file the edit."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        n = ws.ingest.quarantine.export(to, _selection(batch, ids, reason))
    if as_json:
        print_json({"exported": n, "file": to})
    else:
        out.print(
            f'Wrote {n:,} rows to {text(to)}; fix the "row" objects, then: jingzhun quarantine replay --file {text(to)}'
        )


@app.command()
def replay(
    ctx: typer.Context,
    batch: BatchOpt = None,
    ids: IdOpt = None,
    reason: ReasonOpt = None,
    file: Annotated[
        str | None,
        typer.Option("--file", help="An edited export: its rows replace the stored ones."),
    ] = None,
    event_map: Annotated[
        list[str] | None,
        typer.Option("--event-map", help="Extra event-name mapping SRC=EVENT for this replay."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate open rows again (after fixing the config or the rows) and ingest those that pass."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        results = ws.ingest.quarantine.replay(
            _selection(batch, ids, reason),
            file=file,
            event_map=parse_assignments(event_map, "--event-map"),
        )
    totals = {
        "rows": sum(r.rows_read for r in results),
        "resolved": sum(r.resolved for r in results),
        "still_quarantined": sum(r.quarantined for r in results),
    }
    if as_json:
        print_json({**totals, "batches": [r.to_dict() for r in results]})
        return
    if not results:
        out.print("No open quarantined rows match.")
        return
    for r in results:
        out.print(
            f"[bold]{text(r.batch_id)}[/] replayed {r.rows_read:,} rows of {text(r.sources[0].removeprefix('replay:'))}: [green]{r.resolved:,} resolved[/] ({r.inserted:,} inserted, {r.duplicates:,} already stored), {r.quarantined:,} still quarantined"
        )


@app.command()
def discard(
    ctx: typer.Context,
    batch: BatchOpt = None,
    ids: IdOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give up on open rows: they stay on record, marked discarded."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        n = ws.ingest.quarantine.discard(_selection(batch, ids, reason))
    if as_json:
        print_json({"discarded": n})
    else:
        out.print(f"Discarded {n:,} rows (kept on record).")
