"""``jingzhun ingest events|users|items FILE...``"""

from __future__ import annotations

from typing import Annotated

import typer

from jingzhun.cli.common import Globals, byte_progress, err, out, print_json, text
from jingzhun.ingest.validate import parse_assignments

app = typer.Typer(
    help="Read event, user or item files into the store: validate, quarantine, dedupe.",
    no_args_is_help=True,
)

FilesArg = Annotated[
    list[str],
    typer.Argument(
        help="Files to read (CSV, TSV, Parquet, JSON Lines; .gz too); - for stdin.",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format", "-f", help="csv, tsv, parquet or jsonl (default: from the name or content)."
    ),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map", "-m", help="Rename a column: SRC=FIELD, e.g. --map CustomerID=user_id. Repeatable."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Give a field one value for every row: FIELD=VALUE. Repeatable."),
]
EventMapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--event-map",
        help="Map an event name: SRC=EVENT, e.g. --event-map purchase=order_completed.",
    ),
]
TsFormatOpt = Annotated[
    str | None,
    typer.Option("--ts-format", help="strptime layout of text timestamps, e.g. '%m/%d/%Y %H:%M'."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object with the batch's counts.")
]


def _run(
    ctx: typer.Context,
    kind: str,
    files: list[str],
    fmt: str | None,
    mapping: list[str] | None,
    consts: list[str] | None,
    event_map: list[str] | None,
    ts_format: str | None,
    as_json: bool,
) -> None:
    g: Globals = ctx.obj
    options = {
        "mapping": parse_assignments(mapping, "--map"),
        "constants": parse_assignments(consts, "--set"),
        "event_map": parse_assignments(event_map, "--event-map"),
    }
    with g.workspace(create=True) as ws, byte_progress() as progress:
        result = ws.ingest.files(
            kind, files, format=fmt, ts_format=ts_format, progress=progress, **options
        )
    data = result.to_dict()
    if as_json:
        keys = ["batch_id", "rows_read", "inserted", "duplicates", "quarantined", "seconds"]
        print_json(
            {k: data[k] for k in keys}
            | {k: v for k, v in data.items() if k not in keys and k != "resolved"}
        )
        return
    rate = result.rows_read / result.seconds if result.seconds else 0.0
    out.print(
        f"[bold]{text(result.batch_id)}[/]  {text(kind)}: read {result.rows_read:,} rows in {result.seconds:.2f}s ({rate:,.0f} rows/s) — "
        f"[green]{result.inserted:,} inserted[/], {result.duplicates:,} duplicates, "
        + (
            f"[yellow]{result.quarantined:,} quarantined[/]"
            if result.quarantined
            else "0 quarantined"
        )
    )
    if result.updated:
        out.print(f"  {result.updated:,} of the inserted rows updated a stored {text(kind[:-1])}")
    if result.identities_linked:
        out.print(
            f"  {result.identities_linked:,} anonymous ids linked to users"
            + (
                f" ({result.identity_conflicts:,} conflicts kept the first link)"
                if result.identity_conflicts
                else ""
            )
        )
    if result.quarantined:
        err.print(f"  see why: jingzhun quarantine show --batch {text(result.batch_id)}")


def _command(kind: str) -> None:
    def command(
        ctx: typer.Context,
        files: FilesArg,
        fmt: FormatOpt = None,
        mapping: MapOpt = None,
        consts: SetOpt = None,
        event_map: EventMapOpt = None,
        ts_format: TsFormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        _run(ctx, kind, files, fmt, mapping, consts, event_map, ts_format, as_json)

    command.__doc__ = {
        "events": "Ingest events (views, carts, orders, email tracking …). Needs event, ts, and user_id or anonymous_id.",
        "users": "Ingest customer records. Needs user_id; email, phone, name, address go to the separate PII table.",
        "items": "Ingest the product catalogue. Needs item_id.",
    }[kind]
    app.command(kind)(command)


for _kind in ("events", "users", "items"):
    _command(_kind)
