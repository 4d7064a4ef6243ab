"""``jingzhun ingest events|users|items FILE...``"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jingzhun.cli.common import Globals, byte_progress, err, out, print_json, text
from jingzhun.errors import InputError
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
        "--format",
        "-f",
        help="csv, tsv, parquet, jsonl or segment (Segment/RudderStack messages); "
        "default: from the name or content.",
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
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="Names of the columns of a CSV/TSV without a header, in order: a,b,c "
        "(the first line is then a row).",
    ),
]
NoHeaderOpt = Annotated[
    bool,
    typer.Option(
        "--no-header", help="The CSV/TSV has no header: columns are column_1 … (see --columns)."
    ),
]
TsUnitOpt = Annotated[
    str | None,
    typer.Option(
        "--ts-unit",
        help="Unit of epoch-number timestamps: s, ms, us or ns (default: from their magnitude).",
    ),
]
OrderIdOpt = Annotated[
    str | None,
    typer.Option(
        "--order-id",
        help="Purchases without an order id: 'row' (each its own order) or 'user-time' "
        "(one order per user and timestamp).",
    ),
]
ReturnsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--returns",
        help="Order lines that are returns become order_refunded: negative-quantity, "
        "cancel-prefix=C. Repeatable.",
    ),
]
OnlyEventsOpt = Annotated[
    str | None,
    typer.Option(
        "--only-events", help="Keep only these events (after --event-map): a,b. Others: skipped."
    ),
]
SkipEventsOpt = Annotated[
    str | None,
    typer.Option("--skip-events", help="Skip these events (counted as skipped): a,b."),
]
ItemColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--item-columns",
        help="Fill the items table from the rows: FIELD=COLUMN,… e.g. category=category_id,price=price.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object with the batch's counts.")
]


def _names(value: str | None, option: str) -> list[str]:
    """A comma-separated list of an option, e.g. --only-events a,b."""
    if value is None:
        return []
    names = [n.strip() for n in value.split(",")]
    if not any(names):
        raise InputError(f"{option} is empty", hint=f"e.g. {option} a,b")
    if "" in names:
        raise InputError(
            f"{option} {value[:60]!r} has an empty name", hint="separate names by single commas"
        )
    return names


def _pairs(value: str | None, option: str) -> dict[str, str]:
    return parse_assignments(_names(value, option), option)


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
    **reading: Any,
) -> None:
    g: Globals = ctx.obj
    options = {
        "mapping": parse_assignments(mapping, "--map"),
        "constants": parse_assignments(consts, "--set"),
        "event_map": parse_assignments(event_map, "--event-map"),
    }
    columns = reading.pop("columns", None)
    if columns is not None:
        options["columns"] = _names(columns, "--columns")
    for key, flag in (("only_events", "--only-events"), ("skip_events", "--skip-events")):
        options[key] = _names(reading.pop(key, None), flag)
    options["item_columns"] = _pairs(reading.pop("item_columns", None), "--item-columns")
    options["returns"] = reading.pop("returns", None) or []
    options.update(reading)
    if g.spark():
        from jingzhun.config import load_settings
        from jingzhun.ingest.lake import check_ingest, ingest_on_lake

        settings = load_settings(g.config)
        check_ingest(kind, settings)  # before Spark starts
        with g.lake(create=True) as lake, byte_progress() as progress:
            result = ingest_on_lake(
                lake,
                settings,
                kind,
                files,
                format=fmt,
                ts_format=ts_format,
                progress=progress,
                **options,
            )
    else:
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
    notes = [
        f"{result.skipped:,} skipped (--only-events/--skip-events)" if result.skipped else "",
        f"{result.previously_removed:,} kept out: removed by clean earlier"
        if result.previously_removed
        else "",
        f"epoch timestamps read in {result.ts_unit}" if result.ts_unit else "",
        f"{result.refunds_linked:,} refunds linked to their order" if result.refunds_linked else "",
    ]
    if any(notes):
        out.print("  " + text("; ".join(n for n in notes if n)))
    for related, counts in result.related.items():
        out.print(
            f"  {text(related)}: {counts['rows']:,} rows — {counts['inserted']:,} inserted "
            f"({counts['updated']:,} updated), {counts['duplicates']:,} unchanged, "
            f"{counts['quarantined']:,} quarantined"
            + (
                f"; {counts['anonymous_identifies']:,} identify calls without a userId"
                if counts.get("anonymous_identifies")
                else ""
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
        columns: ColumnsOpt = None,
        no_header: NoHeaderOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        reading = {"columns": columns, "header": not no_header}
        _run(ctx, kind, files, fmt, mapping, consts, event_map, ts_format, as_json, **reading)

    def events_command(
        ctx: typer.Context,
        files: FilesArg,
        fmt: FormatOpt = None,
        mapping: MapOpt = None,
        consts: SetOpt = None,
        event_map: EventMapOpt = None,
        ts_format: TsFormatOpt = None,
        columns: ColumnsOpt = None,
        no_header: NoHeaderOpt = False,
        ts_unit: TsUnitOpt = None,
        order_id: OrderIdOpt = None,
        returns: ReturnsOpt = None,
        only_events: OnlyEventsOpt = None,
        skip_events: SkipEventsOpt = None,
        item_columns: ItemColumnsOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        reading = {
            "columns": columns,
            "header": not no_header,
            "ts_unit": ts_unit,
            "order_id": order_id,
            "returns": returns,
            "only_events": only_events,
            "skip_events": skip_events,
            "item_columns": item_columns,
        }
        _run(ctx, kind, files, fmt, mapping, consts, event_map, ts_format, as_json, **reading)

    if kind == "events":
        command = events_command
    command.__doc__ = {
        "events": "Ingest events (views, carts, orders, email tracking …). Needs event, ts, and user_id or anonymous_id.",
        "users": "Ingest customer records. Needs user_id; email, phone, name, address go to the separate PII table.",
        "items": "Ingest the product catalogue. Needs item_id.",
    }[kind]
    app.command(kind)(command)


for _kind in ("events", "users", "items"):
    _command(_kind)


@app.command()
def remap(
    ctx: typer.Context,
    event_map: EventMapOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Map stored custom events (names a Segment source sent outside the vocabulary) to known
    events, so that analytics see them: --event-map video_played=product_viewed. Without
    --event-map, list the custom events."""
    g: Globals = ctx.obj
    mapping = parse_assignments(event_map, "--event-map")
    with g.workspace(create=False) as ws:
        changed = ws.ingest.remap(mapping) if mapping else None
        custom = ws.ingest.custom_events()
    if as_json:
        print_json({"remapped": changed or {}, "custom_events": custom})
        return
    for name, n in (changed or {}).items():
        out.print(f"{text(name)}: {n:,} events mapped to {text(mapping_target(mapping, name))}")
    if custom:
        out.print("custom events (ignored by analytics until mapped):")
        for name, n in custom.items():
            out.print(f"  {text(name)}  {n:,}")
    elif not changed:
        out.print("no custom events")
    if changed:
        err.print("  map them at ingest too: [ingest.event_map] in jingzhun.toml")


def mapping_target(mapping: dict[str, str], name: str) -> str:
    from jingzhun.ingest.validate import snake_event

    return next(dst for src, dst in mapping.items() if snake_event(src) == name)
