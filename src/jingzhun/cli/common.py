"""What every command shares: the global options, output, progress bars, errors.

``--json`` prints exactly one JSON object on stdout and nothing else there; tables, progress
bars and logs go to stderr or (human output) stdout only without ``--json``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from jingzhun.config import resolve_db_path
from jingzhun.errors import InputError, NotFoundError
from jingzhun.store.store import check_store_path
from jingzhun.workspace import Workspace

try:  # Typer >= 0.20 ships its own copy of Click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click import get_current_context

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.store.lake import Lake

# No emoji codes: a value such as ":fire:" from the data is printed as written.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

#: Characters a terminal acts on instead of showing: C0 (tab and newline too: a value stays on
#: its line), DEL, C1, and the bidirectional marks, embeddings, overrides and isolates that
#: reorder what is shown (Trojan Source), and the Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(value: object) -> str:
    r"""``value`` as text with every control and bidi character written as an escape.

    >>> visible("a\x1b[31mred\u202e")
    'a\\x1b[31mred\\u202e'
    """
    return _UNSAFE.sub(_escape_char, str(value))


def text(value: object) -> str:
    r"""A value from the data (an id, a name, a reason, a path, an error) made safe to put in
    Rich markup: control and bidi characters made visible, markup escaped, so it prints as
    written.

    >>> text("hx[bold red]x[/]")
    'hx\\[bold red]x\\[/]'
    """
    shown = visible(value)
    core = shown.rstrip("\\")
    if len(core) == len(shown):
        return escape(shown)
    # Rich reads backslashes before a tag as escapes (two print as one): trailing ones are
    # doubled and an empty span put after them, so they stand before a tag whatever the
    # template puts next, and the value prints as written alone or inside markup.
    return escape(core) + "\\" * 2 * (len(shown) - len(core)) + "[dim][/dim]"


#: The ``--json`` option of every command that prints a result.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


#: The engines ``--engine`` chooses between.
ENGINES = ("duckdb", "spark")


@dataclass
class Globals:
    """The options every command shares: ``--db``, ``--config``, ``--engine`` and
    ``--spark-master``."""

    db: str | None = None
    config: str | None = None
    engine: str = "duckdb"
    spark_master: str | None = None

    def lake(self, *, create: bool = False) -> Lake:
        """Open the lake ``--db`` names on Spark (``--engine spark``): the master from
        ``--spark-master``, else ``[spark] master``. Refuses, with what to install or fix,
        when pyspark, Java or the master is missing, or the folder is not a lake (with
        ``create``, a new or empty folder becomes one: a command that writes, as ingest)."""
        from jingzhun.config import load_settings
        from jingzhun.store.lake import Lake

        spark = load_settings(self.config).spark
        return Lake.open(
            self.lake_path(),
            master=self.spark_master or spark.master,
            create=create,
            driver_memory=spark.driver_memory,
        )

    def lake_path(self) -> str:
        """The lake folder ``--db`` (or ``$JINGZHUN_DB``) names with ``--engine spark``."""
        if self.db is None and not os.environ.get("JINGZHUN_DB"):
            raise InputError(
                "--engine spark needs --db naming the lake folder",
                hint="make one from a store with: jingzhun --db STORE lake init --out FOLDER",
            )
        return self.db or os.environ["JINGZHUN_DB"]

    def lake_folder(self) -> Path:
        """The lake folder ``--db`` names, checked to be a lake (before Spark starts)."""
        from jingzhun.store.lake import check_lake

        return check_lake(Path(self.lake_path()).expanduser().absolute(), create=False)

    @contextmanager
    def lake_scratch(self) -> Iterator[tuple[Path, Workspace]]:
        """With ``--engine spark``, for a command that reads a few of a lake's rows: the lake
        folder (checked, no Spark started) and a workspace over a new scratch store, removed
        after. The command reads into it the rows it needs (``store.lake.read_rows``) and
        answers with the store's own code, as on a store."""
        import tempfile

        from jingzhun.config import load_settings
        from jingzhun.store.store import Store

        lake = self.lake_folder()
        settings = load_settings(self.config)
        with (
            tempfile.TemporaryDirectory(prefix="jingzhun-lake-read-") as scratch,
            Workspace(Store.open(Path(scratch) / "scratch.duckdb", settings), settings) as ws,
        ):
            yield lake, ws

    def spark(self) -> bool:
        return self.engine == "spark"

    def workspace(self, *, create: bool, read_only: bool = False) -> Workspace:
        """Open the command's store.

        Parameters
        ----------
        create : bool
            Whether a missing store is created. Only a command that writes to the store
            passes True; one that only reads passes False, so a path where no store is (a
            typo in ``--db``) is an error naming it, not a new empty store that reports zero
            rows. Either way an existing store of an older schema is upgraded.
        read_only : bool
            Open with DuckDB's read-only access, which lets several readers share the file;
            such a store is never created nor upgraded.

        Raises
        ------
        NotFoundError
            ``create`` is False (or ``read_only`` True) and no file is at the path.
        """
        if self.engine != "duckdb":
            command = get_current_context(silent=True)
            name = command.command_path.removeprefix("jingzhun ") if command else "this command"
            raise InputError(
                f"{name} does not run on --engine {self.engine} yet",
                hint="on Spark so far: ingest events, users and items, clean (without --remove), "
                "profile build (profiles, affinity, tags), profile show and export, tags list, "
                "segment run, assign, list, show and export, privacy export and erase; with "
                "--from-store STORE: recommend batch, predict score, campaign create and "
                "preview; make the lake with lake init, or ingest into a new folder; run the "
                "rest on the DuckDB store (docs/scaling.md)",
            )
        if not create:
            path = check_store_path(resolve_db_path(self.db))
            if not path.exists():
                raise NotFoundError(f"no store at {path}", hint=NO_STORE_HINT)
        return Workspace.open(self.db, config=self.config, read_only=read_only)


#: ``--from-store``: with ``--engine spark``, the store that holds what a lake does not.
FromStoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--from-store",
        help="With --engine spark: the DuckDB store that holds what a lake does not — the "
        "trained models, the campaigns, personal data and deliveries.",
    ),
]


def from_store_for_spark(
    g: Globals, from_store: Path | None, command: str, *, holds: str = "the trained model"
) -> Path | None:
    """``--from-store`` checked against ``--engine``: required on Spark, refused on DuckDB;
    ``holds`` says what the command reads from it."""
    if g.spark() and from_store is None:
        raise InputError(
            f"{command} on --engine spark needs --from-store STORE",
            hint=f"name the DuckDB store that holds {holds}",
        )
    if not g.spark() and from_store is not None:
        raise InputError(
            "--from-store goes with --engine spark",
            hint="on DuckDB, --db names the store that holds everything",
        )
    return from_store


#: How to answer "no store at PATH" (the words ``Store.open`` uses for a read-only open).
NO_STORE_HINT = "check --db or $JINGZHUN_DB, or ingest data first (jingzhun ingest events FILE)"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):  # pandas' Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_floats(v) for v in value]
    return value


#: What JSON leaves raw but a terminal acts on: DEL, C1 (U+009B is a CSI) and the bidi controls.
#: JSON text has them only inside strings, where the ``\uXXXX`` escape is the same string.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def print_json(obj: Any) -> None:
    """One JSON object on stdout (NaN and infinities become null: they are not JSON)."""
    dumped = json.dumps(_clean_floats(obj), default=_default, ensure_ascii=False)
    dumped = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)
    sys.stdout.write(dumped + "\n")
    sys.stdout.flush()


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))


def print_frame(
    frame: pd.DataFrame, title: str | None = None, *, max_width: int | None = 60
) -> None:
    table = Table(
        title=None if title is None else text(title), show_lines=False, header_style="bold"
    )
    from pandas.api.types import is_numeric_dtype  # a frame given: pandas is loaded

    for col in frame.columns:
        numeric = is_numeric_dtype(frame[col])
        table.add_column(
            text(col), justify="right" if numeric else "left", overflow="fold", max_width=max_width
        )
    for row in frame.itertuples(index=False):
        table.add_row(*[_cell(v) for v in row])
    out.print(table)


def _nat() -> Any:
    """pandas' NaT when pandas is loaded (a cell can only be NaT then)."""
    pandas = sys.modules.get("pandas")
    return getattr(pandas, "NaT", None) if pandas is not None else None


def _cell(v: Any) -> str:
    """A table cell as markup: numbers formatted, data escaped (:func:`text`)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is _nat():
        return "–"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return text(v)


#: Warnings nobody running jingzhun can act on, each matched as narrowly as it can be:
#: (message regex, category, regex of the module that warns).
_UNACTIONABLE: tuple[tuple[str, type[Warning], str], ...] = (
    # Ibis 12's DuckDB backend still calls DuckDB's deprecated ``fetch_arrow_table()`` to read
    # a table's schema, once per table it looks up (150 times in one `predict train`). Our own
    # code calls ``to_arrow_table()``; this one goes when Ibis makes the same change.
    (r"fetch_arrow_table\(\) is deprecated", DeprecationWarning, r"ibis\."),
)


@contextmanager
def distinct_warnings() -> Iterator[None]:
    """Collect the warnings a block raises and show each distinct one once on stderr when it
    ends without an error, with how many times it came ("warning: MESSAGE (12 times)").

    Warnings in :data:`_UNACTIONABLE` (a third-party library's own deprecations) are left out.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for message, category, module in _UNACTIONABLE:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        yield
    # After the block succeeded: a failure ends in its one error line and nothing else.
    for message, n in Counter(str(w.message).strip() for w in caught).items():
        times = f" ({n:,} times)" if n > 1 else ""
        err.print(f"warning: {text(message)}{times}")


@contextmanager
def byte_progress(enabled: bool = True) -> Iterator[Any]:
    """A progress bar over bytes read, per source file, on stderr."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(label: str, done: int, total: int | None) -> None:
            if label not in tasks:  # a file name: shown as written, never as markup
                tasks[label] = bar.add_task(text(label), total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield update


@contextmanager
def steps(enabled: bool = True) -> Iterator[Any]:
    """A spinner naming the step now running, on stderr."""
    if not enabled or not err.is_terminal:
        yield lambda _msg: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("starting")
        # Step messages name models, files and options the user gave: shown as written.
        yield lambda msg: bar.update(task, description=text(msg))
