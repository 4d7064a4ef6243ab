"""``jingzhun apikey create|list|revoke``: the keys the server accepts.

A key is shown once, by ``create``; the store keeps only its hash, so ``list`` shows names,
scopes and dates, never a key. While ``jingzhun serve`` holds the store, ``create`` and
``revoke`` cannot write to it (DuckDB allows one writing process) and say so: manage keys
while the server is stopped.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from jingzhun.cli.common import Globals, JsonOpt, err, out, print_frame, print_json, text
from jingzhun.store import apikeys

app = typer.Typer(
    help="API keys for the server: create (shown once), list, revoke.",
    no_args_is_help=True,
)


@app.command()
def create(
    ctx: typer.Context,
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            help="ingest (may only send events), read (may only read) or admin (everything).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="A name for the key, unique among keys in use: 1-64 letters, digits, - _ .",
            show_default=False,
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Make a key and print it. It is shown this once only: the store keeps just its hash."""
    g: Globals = ctx.obj
    # A new store may be made here: keys are set up before the server first starts.
    with g.workspace(create=True) as ws:
        key, plaintext = apikeys.create(ws.store, name, scope)
    record = key.to_dict()
    if as_json:
        print_json(
            {
                "name": key.name,
                "scope": key.scope,
                "key": plaintext,
                "key_id": key.key_id,
                "created_at": record["created_at"],
            }
        )
        return
    out.print(f"API key {text(key.name)} ({text(key.scope)}, id {text(key.key_id)}):")
    # On a line of its own (the console never wraps), so it copies whole.
    out.print(text(plaintext))
    err.print(
        "This key is shown only once: store it now. jingzhun keeps only its hash; "
        f"if it is lost, revoke it (jingzhun apikey revoke {text(key.name)}) and create another."
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every key, oldest first, revoked ones included (never the keys themselves)."""
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=True) as ws:
        keys = apikeys.list_keys(ws.store)
    if as_json:
        print_json({"keys": [k.to_dict() for k in keys]})
        return
    if not keys:
        out.print("No API keys yet; make one with: jingzhun apikey create --scope read --name NAME")
        return
    frame = pd.DataFrame(
        {
            "name": [k.name for k in keys],
            "scope": [k.scope for k in keys],
            "key_id": [k.key_id for k in keys],
            "created": [f"{k.created_at:%Y-%m-%d %H:%M}" for k in keys],
            "last used": [_when(k.last_used_at) for k in keys],
            "status": ["in use" if k.active else f"revoked {_when(k.revoked_at)}" for k in keys],
        }
    )
    print_frame(frame, "API keys")


def _when(value: object) -> str:
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M}"


@app.command()
def revoke(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The key's name, as `jingzhun apikey list` shows it.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: the server refuses it from then on (run it while the server is stopped)."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        key = apikeys.revoke(ws.store, name)
    if as_json:
        print_json(key.to_dict())
        return
    out.print(
        f"API key {text(key.name)} ({text(key.scope)}, id {text(key.key_id)}) is revoked; "
        "the server refuses it from now on."
    )
