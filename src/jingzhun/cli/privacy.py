"""``jingzhun init``, ``jingzhun privacy find|export|consent|erase|purge|rotate-key|keygen|status`` and
``jingzhun audit list``: the vault's keys and a person's data on request.

Every command that reads or removes a person's data writes an audit entry (``cli:<os
user>``, the action, the person as a keyed token). ``export`` prints personal data in plain
text — on purpose, it is the person's copy — so it is audited like the others.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from jingzhun.cli.common import Globals, JsonOpt, err, out, print_frame, print_json, text
from jingzhun.contracts.results import json_ready
from jingzhun.errors import InputError
from jingzhun.privacy.audit import cli_actor
from jingzhun.store import vault as v

app = typer.Typer(
    help="Personal data on request: find a person, export or erase their data; the vault's keys.",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="The audit log of admin actions and data requests.", no_args_is_help=True
)

UserArg = Annotated[str, typer.Argument(help="The user's id.", show_default=False)]


def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Make the store (if new) and its vault: the master key goes to a file beside the store
    (mode 0600), unless $JINGZHUN_MASTER_KEY is set. Back the key up: without it the personal
    data cannot be read."""
    g: Globals = ctx.obj
    with g.workspace(create=True) as ws:
        made = v.open_vault(ws.store) is None
        v.vault_for(ws.store, create=True)
        status = ws.privacy.status()
    if as_json:
        print_json({**status.to_dict(), "created": made})
        return
    verb = "Made" if made else "Found"
    out.print(
        f"{text(verb)} the vault of {text(str(ws.path))} (data key {text(status.key_id or '')})."
    )
    out.print(f"Master key: {text(status.key_source)}")
    if made and not status.key_source.startswith("$"):
        err.print(
            "Back this key file up apart from the store (not in the same backup): without it "
            "the personal data cannot be read; with it and the store, anyone can."
        )


@app.command()
def keygen() -> None:
    """Print a new master key (for $JINGZHUN_MASTER_KEY or $JINGZHUN_NEW_MASTER_KEY)."""
    out.print(text(v.new_master_key()))


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Whether the store has a vault, where its key comes from, how many people it holds."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        s = ws.privacy.status()
    if as_json:
        print_json(s.to_dict())
        return
    if not s.vault:
        out.print("No vault yet: it is made at the first users ingest, or by jingzhun init.")
        return
    out.print(
        f"Vault with data key {text(s.key_id or '')}; master key from {text(s.key_source)}; "
        f"{s.encrypted_rows:,} people's personal data encrypted."
    )
    if s.reencryption_in_progress:
        out.print(
            "A re-encryption was interrupted: run jingzhun privacy rotate-key --reencrypt again."
        )


@app.command()
def find(
    ctx: typer.Context,
    email: Annotated[str | None, typer.Option("--email", help="An email address.")] = None,
    phone: Annotated[str | None, typer.Option("--phone", help="A phone number.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The users with this email or phone (compared as the vault normalizes them: case and
    spaces of an email, the digits of a phone), without decrypting anyone's data."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        users = ws.privacy.find(email=email, phone=phone, actor=cli_actor())
    if as_json:
        print_json({"users": users})
        return
    if not users:
        out.print("No user has it.")
        return
    for u in users:
        out.print(text(u))


@app.command()
def export(
    ctx: typer.Context,
    user_id: UserArg,
    to: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Write the JSON here instead of standard output."),
    ] = None,
) -> None:
    """All of a user's data as one JSON object: identity, personal data decrypted, consents,
    events, profile, tags, segments, scores, recommendations, campaigns, quarantined rows
    (--engine spark: the lake's, and its personal store's, read without starting Spark)."""
    from jingzhun.outputs import atomic_write, check_output_path

    g: Globals = ctx.obj
    if g.spark():
        data, target = _export_from_lake(g, user_id, to)
    else:
        with g.workspace(create=False) as ws:
            target = check_output_path(to, store_path=ws.path) if to is not None else None
            data = ws.privacy.export(user_id, actor=cli_actor())
    if target is None:
        print_json(data)
        return
    with atomic_write(target, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1, default=str)
    err.print(f"Wrote {text(str(target))}")


def _export_from_lake(g: Globals, user_id: str, to: str | None) -> tuple[dict[str, Any], Any]:
    """``privacy export`` on the lake ``--db`` names: the output file checked first (not in
    the lake, nor its personal store), then the lake's rows read."""
    from jingzhun.config import load_settings
    from jingzhun.outputs import check_output_path
    from jingzhun.privacy.lake import export_from_lake
    from jingzhun.store.lake import PERSONAL, check_outside

    lake = g.lake_folder()
    target = None
    if to is not None:
        target = check_output_path(to, store_path=lake / PERSONAL)
        check_outside(lake, target, to)
    data = export_from_lake(lake, load_settings(g.config), user_id, actor=cli_actor())
    return data, target


@app.command()
def consent(
    ctx: typer.Context,
    user_id: UserArg,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Record a statement: PURPOSE[:CHANNEL]=STATUS, e.g. marketing:email=REVOKED "
            "(purposes marketing, analytics, personalization; channel any when left out; "
            "status GRANTED, DENIED or REVOKED). Repeatable.",
            show_default=False,
        ),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="Every statement, oldest first.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A user's consents in force per purpose and channel (a purpose without one follows
    [privacy] default_marketing_consent for marketing); --set records new statements first."""
    from jingzhun.ingest.consent import statement

    statements = []
    for given in set_ or []:  # all checked before any is recorded
        left, eq, status = given.partition("=")
        purpose, _, channel = left.partition(":")
        try:
            if not eq:
                raise InputError("expected PURPOSE[:CHANNEL]=STATUS")
            statements.append(statement(purpose, channel, status))
        except InputError as exc:
            part = f"{exc.param} part " if exc.param else ""
            message = exc.message.removeprefix(f"{exc.param} ") if exc.param else exc.message
            raise InputError(
                f"--set {given[:60]!r}: {part}{message}",
                hint="e.g. --set marketing:email=REVOKED",
            ) from exc
    g: Globals = ctx.obj
    with g.workspace(create=False, read_only=not statements) as ws:
        for purpose, channel, status in statements:
            ws.privacy.set_consent(
                user_id, purpose, status, channel=channel, actor=cli_actor(), source=cli_actor()
            )
        frame = ws.privacy.consents(user_id, history=history)
        default = ws.settings.privacy.default_marketing_consent
    if as_json:
        print_json({"user_id": user_id, "consents": json_ready(frame), "default": default})
        return
    if frame.empty:
        out.print(f"No consent recorded: marketing is {text(default)} (the default).")
        return
    print_frame(frame.drop(columns="user_id"), "Consent history" if history else "Consents")


@app.command()
def erase(ctx: typer.Context, user_id: UserArg, as_json: JsonOpt = False) -> None:
    """Remove a user from every table — events (their anonymous ids' too), identities,
    users, personal data, profiles, tags, segments, recommendations, scores, campaigns,
    quarantined rows — and record the erasure (by keyed token) in the audit log (--engine
    spark: from every table of the lake, and its personal store)."""
    g: Globals = ctx.obj
    if g.spark():
        from jingzhun.config import load_settings
        from jingzhun.privacy.lake import erase_on_lake, find_person

        settings = load_settings(g.config)
        person = find_person(g.lake_folder(), settings, user_id)  # before Spark starts
        with g.lake() as lake:
            done = erase_on_lake(lake, settings, person, actor=cli_actor())
    else:
        with g.workspace(create=False) as ws:
            done = ws.privacy.erase(user_id, actor=cli_actor())
    if as_json:
        print_json(done.to_dict())
        return
    total = sum(done.rows.values())
    out.print(f"Erased {total:,} rows of the user (audit token {text(done.subject)}):")
    for table, n in done.rows.items():
        out.print(f"  {text(table)}: {n:,}")
    if done.models_holding_erased:
        err.print(
            f"{len(done.models_holding_erased):,} trained models may still hold erased users: "
            "retrain them (jingzhun models list shows which)."
        )


@app.command()
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            help="Delete events (and quarantined rows, cleaning records, daily activity) "
            "older than this many days.",
            show_default=False,
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Retention: delete what is older than the window. Profiles, scores and
    recommendations follow at their next build; campaigns keep their members."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        done = ws.privacy.purge(older_than, actor=cli_actor())
    if as_json:
        print_json(done.to_dict())
        return
    out.print(f"Deleted what is older than {done.cutoff:%Y-%m-%d %H:%M} UTC:")
    for table, n in done.rows.items():
        out.print(f"  {text(table)}: {n:,}")
    if not done.rows:
        out.print("  nothing was that old.")


@app.command()
def compact(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Rewrite the store file so rows deleted by erase and purge leave nothing in its free
    blocks (DuckDB keeps deleted bytes until it reuses them). Needs the store closed
    everywhere: stop jingzhun serve first."""
    from jingzhun.privacy import audit
    from jingzhun.store.compact import compact as rewrite

    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        path = ws.path
        audit.record(ws.store, cli_actor(), "privacy.compact")
    done = rewrite(path, memory_limit=ws.settings.store.memory_limit)
    if as_json:
        print_json(done)
        return
    out.print(
        f"Rewrote {text(str(path))}: {done['bytes_before']:,} -> {done['bytes_after']:,} bytes "
        f"in {done['seconds']:.1f} s."
    )


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    reencrypt: Annotated[
        bool,
        typer.Option(
            "--reencrypt",
            help="Also encrypt every value again under a new data key (resumable: run it "
            "again after an interruption).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put the vault under a new master key: a new key file, or the key in
    $JINGZHUN_NEW_MASTER_KEY when $JINGZHUN_MASTER_KEY is in use."""
    g: Globals = ctx.obj
    with g.workspace(create=False) as ws:
        done = ws.privacy.rotate_key(reencrypt=reencrypt, actor=cli_actor())
    if as_json:
        print_json(done.to_dict())
        return
    out.print(f"The vault is under the new master key, now in {text(done.key_now_in)}.")
    if done.reencrypted_rows is not None:
        out.print(
            f"Encrypted {done.reencrypted_rows:,} people's data again (data key {text(done.key_id)})."
        )
    if done.key_now_in.startswith("$"):
        err.print(f"Set {text(v.KEY_ENV)} to it now: the old key no longer opens the vault.")


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (e.g. privacy.erase).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many entries.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit entries first: when, who, what, whom (a keyed token), details."""
    g: Globals = ctx.obj
    if limit < 1:
        raise InputError(f"--limit {limit} must be 1 or more", param="limit")
    with g.workspace(create=False, read_only=True) as ws:
        frame = ws.privacy.audit(action=action, limit=limit)
    if as_json:
        print_json({"entries": json_ready(frame)})
        return
    if frame.empty:
        out.print("No audit entries.")
        return
    print_frame(frame, "Audit log")
