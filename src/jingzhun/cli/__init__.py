"""The ``jingzhun`` command line: ``jingzhun [--db PATH] [--config FILE] GROUP COMMAND [ARGS]``.

Exit codes: 0 success, 1 failure while running, 2 bad input or usage. Errors print one line on
stderr: what is wrong, where, and how to fix it. A core error names its parameter as Python
spells it (``as_of``); the one error handler here shows it as the flag that sets it
(``--as-of``).
"""

from __future__ import annotations

import errno
import importlib
import re
import sys
from typing import Annotated, Any

import typer

try:  # Typer >= 0.20 ships its own copy of Click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]

from jingzhun import __version__, interrupt
from jingzhun.cli.common import ENGINES, Globals, visible
from jingzhun.errors import JingzhunError

#: The command tree: each group (a Typer app) and single command, in the order ``--help``
#: lists them, as (name, module in jingzhun.cli, attribute, is a group). A command's module
#: is imported only when the command line names it (see :func:`command_named`): the modules
#: reach pandas, Ibis and the stages' code, ~0.7 s that every command paid at start-up.
COMMANDS: tuple[tuple[str, str, str, bool], ...] = (
    ("ingest", "ingest", "app", True),
    ("quarantine", "quarantine", "app", True),
    ("profile", "profile", "app", True),
    ("tags", "profile", "tags_app", True),
    ("analyze", "profile", "analyze_app", True),
    ("segment", "segment", "app", True),
    ("recommend", "recommend", "app", True),
    ("predict", "predict", "app", True),
    ("models", "models", "app", True),
    ("apikey", "apikey", "app", True),
    ("campaign", "campaign", "app", True),
    ("privacy", "privacy", "app", True),
    ("audit", "privacy", "audit_app", True),
    ("lake", "lake", "app", True),
    ("init", "privacy", "init", False),
    ("clean", "commands", "clean", False),
    ("status", "commands", "status", False),
    ("synth", "commands", "synth", False),
    ("demo", "commands", "demo", False),
    ("report", "commands", "report", False),
    ("serve", "serve", "serve", False),
)
#: The root's options that take a value (``--db PATH``): skipped when looking for the command.
_VALUED = ("--db", "--config", "--engine", "--spark-master")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jingzhun {__version__}")
        raise typer.Exit()


def command_named(argv: list[str]) -> str | None:
    """The command ``argv`` names (after the root's options), or None when it names none
    that is known, or asks for help or the version — then the whole tree is built."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            if arg in _VALUED:
                skip = True
                continue
            if arg.split("=", 1)[0] in _VALUED and "=" in arg:
                continue
            return None  # --help, --version, or an option the root does not take
        return arg if any(arg == name for name, *_ in COMMANDS) else None
    return None


def build_app(only: str | None = None) -> typer.Typer:
    """The ``jingzhun`` app: every command, or only the command ``only`` (what one run of
    the command line needs: the other commands' modules are not imported)."""
    app = typer.Typer(
        name="jingzhun",
        help="精准 jingzhun — precision marketing on your own data.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        db: Annotated[
            str | None,
            typer.Option(
                "--db", envvar="JINGZHUN_DB", help="The store (default ./jingzhun.duckdb)."
            ),
        ] = None,
        config: Annotated[
            str | None,
            typer.Option(
                "--config",
                envvar="JINGZHUN_CONFIG",
                help="Settings file (default ./jingzhun.toml if present).",
            ),
        ] = None,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                envvar="JINGZHUN_ENGINE",
                help="duckdb (the store file, default) or spark (--db names a lake folder).",
            ),
        ] = "duckdb",
        spark_master: Annotated[
            str | None,
            typer.Option(
                "--spark-master",
                envvar="JINGZHUN_SPARK_MASTER",
                help="With --engine spark: local[N], spark://HOST:PORT, ... (default [spark] "
                "master, local[2]).",
            ),
        ] = None,
        version: Annotated[
            bool,
            typer.Option(
                "--version", callback=_version, is_eager=True, help="Print the version and exit."
            ),
        ] = False,
    ) -> None:
        if engine not in ENGINES:
            raise typer.BadParameter(
                f"{engine[:100]!r} is not an engine; use one of: {', '.join(ENGINES)}",
                param_hint="--engine",
            )
        ctx.obj = Globals(db=db, config=config, engine=engine, spark_master=spark_master)

    for name, module, attribute, group in COMMANDS:
        if only is not None and name != only:
            continue
        part = getattr(importlib.import_module(f"jingzhun.cli.{module}"), attribute)
        if group:
            app.add_typer(part, name=name)
        else:
            app.command()(part)
    return app


#: Core parameters whose flag is not ``--`` and the name with ``_`` as ``-`` (the quarantine
#: selection's fields, as ``quarantine list|export|replay|discard`` spell them).
FLAG_OVERRIDES: dict[str, str] = {"batch_id": "--batch", "include_resolved": "--all"}


def flag(param: str) -> str:
    """The command-line flag of a core parameter: ``as_of`` → ``--as-of``."""
    return FLAG_OVERRIDES.get(param, "--" + param.replace("_", "-"))


def error_text(exc: JingzhunError) -> str:
    """The error as the command line says it: its parameter (the first mention of
    ``exc.param``, as a whole word) written as the flag.

    Examples
    --------
    >>> from jingzhun.errors import InputError
    >>> error_text(InputError("as_of 'x' is not a timestamp", hint="use ISO 8601", param="as_of"))
    "--as-of 'x' is not a timestamp; use ISO 8601"
    """
    if exc.param is None:
        return str(exc)
    word = re.compile(rf"(?<![\w-]){re.escape(exc.param)}(?![\w-])")
    return word.sub(lambda _: flag(exc.param or ""), str(exc), count=1)


def _fail(message: str, code: int) -> None:
    # One line, unwrapped, whatever the terminal width: runs of blanks and line breaks become
    # one space; any other control or bidi character (an id quoted in the message may carry
    # one) is written as an escape, so nothing reaches the terminal but text.
    line = visible(re.sub(r"[ \t\r\n]+", " ", message).strip())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    sys.exit(code)


#: OS errors that say the user named a path that cannot be used (bad input, exit 2); any other
#: OS error (disk full, I/O) is a failure while running (exit 1).
_PATH_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.ELOOP,
    errno.EROFS,
}


def _check_arguments(args: list[str]) -> None:
    """Refuse arguments no file, id or option value can hold: undecodable bytes (Python hands
    them over as lone surrogates, which DuckDB, Rich and the terminal all choke on) and NUL."""
    for i, arg in enumerate(args, start=1):
        if "\x00" in arg or any(0xD800 <= ord(c) <= 0xDFFF for c in arg):
            # Any surrogate shows as U+FFFD: PEP 383's (undecodable bytes) and those only the
            # Python API can pass ('\ud800'), which no codec encodes.
            shown = visible("".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in arg))
            _fail(
                f"argument {i} ({shown[:80]}) is not valid UTF-8 text; "
                "ids, options and file names must be UTF-8 without NUL",
                2,
            )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(build_app(command_named(args)))
    _check_arguments(args)
    installed = interrupt.catch()
    try:
        _run(command, argv)
    finally:
        if installed:  # main() called in a process that goes on (a test, a notebook)
            interrupt.release()


def _run(command: Any, argv: list[str] | None) -> None:
    try:
        try:
            code = command.main(args=argv, prog_name="jingzhun", standalone_mode=False)
        except Exception:
            if interrupt.interrupted():
                raise KeyboardInterrupt from None
            raise
    except JingzhunError as exc:
        _fail(error_text(exc), exc.exit_code)
    except click_exc.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else str(exc)) + "\n")
        sys.exit(2)
    except click_exc.UsageError as exc:
        hint = f"; see: {exc.ctx.command_path} --help" if exc.ctx else ""
        _fail(f"{exc.format_message().rstrip('.')}{hint}", 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail(interrupt.message(), 130)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say, and nowhere to say it.
        sys.stderr.close()
        sys.exit(141)
    except OSError as exc:
        # A path the user named that the OS refuses (too long, a loop …), met where a
        # stage did not expect it: one line, never a traceback.
        where = f"{str(exc.filename)[:80]}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", 2 if exc.errno in _PATH_ERRNOS else 1)
    except Exception as exc:
        # A Spark error a stage did not name (a lake file changed outside jingzhun, a worker
        # lost): one line, not the JVM's stack trace.
        from jingzhun.store.lake import spark_failure

        failure = spark_failure(exc)
        if failure is None:
            raise
        _fail(error_text(failure), failure.exit_code)
    # Without standalone mode, Click returns the exit code instead of exiting (130 after
    # Ctrl-C, for one).
    if isinstance(code, int) and code != 0:
        if code == 130:
            _fail(interrupt.message(), 130)
        sys.exit(code)


__all__ = ["COMMANDS", "build_app", "command_named", "error_text", "flag", "main"]
