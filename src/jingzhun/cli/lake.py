"""``jingzhun lake``: the Parquet lake the Spark engine works on (issue 19)."""

from __future__ import annotations

from typing import Annotated

import typer

from jingzhun.cli.common import Globals, JsonOpt, out, print_json, steps, text

app = typer.Typer(help="The lake of Parquet tables that --engine spark works on.")


@app.command()
def init(
    ctx: typer.Context,
    folder: Annotated[
        str,
        typer.Option("--out", help="The new lake: a new or empty folder."),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Make a lake from the store's events, users, items and identities (--db names the
    store); then run stages on it with: jingzhun --engine spark --db FOLDER ..."""
    g: Globals = ctx.obj
    from jingzhun.outputs import check_output_dir
    from jingzhun.store.lake import create_from_store

    source = Globals(db=g.db, config=g.config)  # the store, read on DuckDB
    with source.workspace(create=False, read_only=True) as ws:
        where = check_output_dir(folder, flag="--out", store_path=ws.store.path)
        with steps() as say:
            say("writing the lake's tables")
            counts = create_from_store(ws.store, where)
    if as_json:
        print_json({"lake": str(where), "tables": counts})
        return
    out.print(
        f"Made the lake {text(str(where))}: "
        + ", ".join(f"{text(k)} {v:,}" for k, v in counts.items())
        + f"\nRun stages on it with: jingzhun --engine spark --db {text(str(where))} profile build"
    )
