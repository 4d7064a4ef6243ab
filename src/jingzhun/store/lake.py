"""A jingzhun lake: the store's tables as Parquet in a folder, computed on Apache Spark
(``--engine spark``, issue 19).

The embedded DuckDB file stays the default. A shop whose data outgrows one machine keeps its
tables in a lake — one folder of Parquet per table, local or on a shared file system, with a
``jingzhun-lake.json`` marker — and the stages run there through the *same* Ibis definitions
the DuckDB engine compiles (Ibis' PySpark backend), not a second implementation.

What this module owns: checking that Spark can run at all (pyspark in the range Ibis supports,
a Java runtime, a reachable master) with one clear message and exit code 2 when not; opening
the Spark session and the Ibis backend over the lake's tables; writing a table atomically (to a
hidden folder, then one rename); and making a lake from an existing store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from jingzhun.errors import InputError, JingzhunError
from jingzhun.store.sql import ident

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa
    from ibis.backends.pyspark import Backend

    from jingzhun.store.store import Store

#: The marker file that makes a folder a jingzhun lake, and its format version.
MARKER = "jingzhun-lake.json"
FORMAT = 1
#: pyspark releases Ibis 12's PySpark backend supports (its ``pyspark`` extra).
PYSPARK_RANGE = ((3, 5), (4, 1))
#: The master when neither ``--spark-master`` nor ``[spark] master`` names one.
DEFAULT_MASTER = "local[2]"
#: The tables a lake made from a store carries: what the Spark stages read.
#: Not the quarantine: its rows' content keys (and raw rows) are keyed with the store's vault,
#: so a lake starts its own.
LAKE_TABLES = ("events", "users", "items", "identities", "consents", "ingest_batches")
#: The lake's personal store: a DuckDB file in the lake's folder holding the users' personal
#: data (the vault's sealed records, ``pii``) and the vault's wrapped keys — never in the
#: lake's Parquet, which any Spark worker reads (personal data kept apart, issue 18). Its key
#: file is beside it (``personal.duckdb.key``) unless ``$JINGZHUN_MASTER_KEY`` is set.
PERSONAL = "personal.duckdb"

_INSTALL = "pip install 'jingzhun[spark]'"


class SparkUnavailable(InputError):
    """Spark cannot run here: pyspark, Java or the master is missing or wrong."""


#: Words of a Spark error that mean a lake file is not what jingzhun writes (a table written
#: by hand or by another tool): the lake is the input at fault.
_NOT_OURS = (
    "cannot be converted",
    "DATA_TYPE_MISMATCH",
    "UNRESOLVED_COLUMN",
    "CANNOT_MERGE_SCHEMAS",
    "is not a Parquet file",
    "FAILED_READ_FILE",
)


def spark_failure(exc: BaseException) -> JingzhunError | None:
    """A Spark error that reached the command line, as one line (``None`` for any other
    error): of the messages along its Java causes, the first that names a file ("… reading
    file file:///lake/items/x.parquet. Data type mismatches when reading Parquet column …"),
    else the deepest — not Spark's stack trace. A mismatch between a lake file and the
    columns jingzhun writes is the lake's fault (an :class:`InputError`, exit 2)."""
    try:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException
    except ImportError:
        return None
    if not isinstance(exc, (PySparkException, Py4JJavaError)):
        return None
    said = [str(exc)]
    cause = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    try:
        while cause is not None:
            message = cause.getMessage()
            if message:
                said.append(str(message))
            cause = cause.getCause()
    except Exception:  # the JVM has gone: what Python holds is all there is
        pass
    lines = [ln.strip() for text in said for ln in text.splitlines()[:1] if ln.strip()]
    # "Job aborted …" and py4j's "An error occurred while calling o280.save" wrap the cause;
    # the cause that names a file says most ("… reading file file:///lake/users/x.parquet.
    # Data type mismatches when reading Parquet column [user_id] …"), else the deepest.
    told = [ln for ln in lines if not ln.startswith(("Job aborted", "An error occurred"))]
    fallback = told[-1] if told else (lines[0] if lines else type(exc).__name__)
    chosen = next((ln for ln in told if "file" in ln), fallback)
    first = re.sub(r"\s*SQLSTATE: \w+\s*$", "", chosen)[:300] or type(exc).__name__
    if any(word in text for text in said for word in _NOT_OURS):
        return InputError(
            f"Spark could not read the lake: {first}",
            hint="a lake table was changed outside jingzhun; rewrite it with jingzhun, or "
            "make the lake again with `jingzhun lake init`",
        )
    return JingzhunError(f"Spark failed: {first}")


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_pyspark() -> str:
    """pyspark's version if it is installed and within :data:`PYSPARK_RANGE`, else a
    :class:`SparkUnavailable` naming what to install."""
    try:
        found = metadata.version("pyspark")
    except metadata.PackageNotFoundError:
        raise SparkUnavailable(
            "--engine spark needs pyspark, which is not installed",
            hint=f"install it with: {_INSTALL}",
        ) from None
    low, high = PYSPARK_RANGE
    if not low <= _version(found)[:2] < high:
        raise SparkUnavailable(
            f"pyspark {found} is outside the range jingzhun's engine supports "
            f"(>={'.'.join(map(str, low))},<{'.'.join(map(str, high))})",
            hint=f"install a supported one: {_INSTALL}",
        )
    return found


def check_java() -> str:
    """The Java runtime Spark will start (``$JAVA_HOME/bin/java``, else ``java`` on PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if os.access(java, os.X_OK):
            return str(java)
        raise SparkUnavailable(
            f"$JAVA_HOME ({home[:200]}) has no bin/java",
            hint="point JAVA_HOME at a Java 17 or 21 runtime, or unset it to use java on PATH",
        )
    found = shutil.which("java")
    if found is None:
        raise SparkUnavailable(
            "--engine spark needs a Java runtime and none was found (no $JAVA_HOME, no java "
            "on PATH)",
            hint="install one (Debian: apt install openjdk-17-jre-headless) or set JAVA_HOME",
        )
    return found


def check_master(master: str) -> str:
    """``master`` if Spark can use it: ``local``, ``local[N]``, ``local[*]``, or a
    ``spark://HOST:PORT`` that answers on that port (checked with a 3 s connect, so an
    unreachable cluster is one message instead of Spark's minute of retries)."""
    text = master.strip()
    if text == "local" or (
        text.startswith("local[")
        and text.endswith("]")
        and (text[6:-1] == "*" or (text[6:-1].isdigit() and int(text[6:-1]) > 0))
    ):
        return text
    if text == "yarn" or text.startswith("k8s://"):
        return text  # found through Spark's own cluster manager configuration
    url = urlparse(text)
    if url.scheme != "spark" or not url.hostname or url.port is None:
        raise SparkUnavailable(
            f"--spark-master {text[:200]!r} is not a Spark master URL",
            hint="use local[2], local[*], spark://HOST:PORT, yarn or k8s://URL",
        )
    try:
        with socket.create_connection((url.hostname, url.port), timeout=3):
            pass
    except OSError as exc:
        raise SparkUnavailable(
            f"cannot reach the Spark master {text[:200]} ({exc.strerror or exc})",
            hint="check the host and port, that the master runs, or use --spark-master local[2]",
        ) from None
    return text


def check_lake(path: Path, *, create: bool) -> Path:
    """``path`` if it is a jingzhun lake (or, with ``create``, a new or empty folder for one);
    a :class:`InputError` naming the path otherwise — never a DuckDB file read as a lake."""
    if path.is_file():
        raise InputError(
            f"{path} is a file, not a jingzhun lake (a folder with {MARKER})",
            hint="with --engine spark, --db names the lake folder; make one from a store "
            "with: jingzhun --db STORE lake init --out FOLDER",
        )
    marker = path / MARKER
    if marker.exists():
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(
                f"{marker} is not a jingzhun lake marker of format {FORMAT}",
                hint="restore the marker, or make the lake again with lake init",
            )
        return path
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{path} is not a folder, so not a jingzhun lake",
            hint="name a jingzhun lake, or an empty or new folder to make one",
        )
    if path.is_dir() and any(path.iterdir()):
        raise InputError(
            f"{path} is not a jingzhun lake (no {MARKER}) and is not empty",
            hint="name a jingzhun lake, or an empty or new folder to make one",
        )
    if not create:
        raise InputError(
            f"no jingzhun lake at {path}",
            hint="make one from a store with: jingzhun --db STORE lake init --out FOLDER",
        )
    return path


@dataclass
class Lake:
    """An open lake: the Spark session, the Ibis backend over its tables, and writes."""

    path: Path
    master: str
    session: Any = field(repr=False)
    backend: Backend = field(repr=False)
    owns_session: bool = True  # False: the caller's session, not stopped by close()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        master: str | None = None,
        session: Any = None,
        create: bool = False,
        driver_memory: str | None = None,
    ) -> Lake:
        """Open the lake at ``path`` on Spark (``master``, default :data:`DEFAULT_MASTER`).
        Everything that can be checked before Spark starts is checked first.

        ``session``: a Spark session the caller owns (a notebook's, or tests sharing one):
        used as it is and left running by :meth:`close`. ``create``: a new or empty folder
        becomes a lake (its marker written now); otherwise it is refused.
        ``driver_memory``: the driver's heap (``[spark] driver_memory``) of a session started
        here."""
        where = check_lake(Path(path).expanduser().absolute(), create=create)
        owns = session is None
        if owns:
            check_pyspark()
            check_java()
            chosen = check_master(master or DEFAULT_MASTER)
            session = _session(chosen, where, driver_memory)
        else:
            chosen = str(session.sparkContext.master)
        if not (where / MARKER).exists():
            _create_empty(where)
        import ibis

        backend = ibis.pyspark.connect(session)
        lake = cls(where, chosen, session, backend, owns)
        for name in lake.tables():
            backend.read_parquet(str(where / name), table_name=name)
        return lake

    def tables(self) -> list[str]:
        """The lake's tables (folders of Parquet, hidden ones being written left out)."""
        return table_names(self.path)

    def ibis(self) -> Backend:
        """The Ibis backend the stages' expressions run on (as :meth:`Store.ibis`)."""
        return self.backend

    def table(self, name: str) -> ir.Table:
        return self.backend.table(name)

    def write(self, name: str, expr: ir.Table) -> int:
        """Write ``expr`` as table ``name``: Spark writes a hidden folder, which then takes
        the table's place in one rename (a reader sees the old table or the new one); the
        new table is registered at once. How many rows."""
        return self._replace(name, lambda staging: self.backend.to_parquet(expr, staging))

    def write_frame(self, name: str, frame: Any) -> int:
        """:meth:`write` for a Spark DataFrame (what ``mapInPandas`` returns)."""
        return self._replace(name, lambda staging: frame.write.parquet(staging))

    def adopt(self, name: str, folder: Path) -> int:
        """:meth:`write` for a table Spark has already written as Parquet into ``folder`` (in
        :meth:`staging`, so on the lake's file system): ``folder`` takes the table's place in
        one rename. How many rows."""
        return self._replace(name, lambda staging: Path(folder).rename(staging))

    def append(self, name: str, part: Path) -> None:
        """Add the Parquet file ``part`` to table ``name`` (made if new) in one rename — a
        reader sees the table with the file or without it — and register the table again so
        this session's next query sees it. ``part`` must be on the lake's file system (write
        it in :meth:`staging`)."""
        ident(name)
        folder = self.path / name
        folder.mkdir(exist_ok=True)
        part.rename(folder / f"part-{part.stem}.parquet")
        self.backend.read_parquet(str(folder), table_name=name)

    def staging(self, label: str) -> Path:
        """A new hidden folder inside the lake for files about to be added (hidden folders
        are no table's; the same file system, so adding one is a rename)."""
        folder = self.path / f".{label}.{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        return folder

    def has(self, name: str) -> bool:
        return has_table(self.path, name)

    def _replace(self, name: str, write: Callable[[str], object]) -> int:
        ident(name)  # a table name is an identifier, as in the store
        final = self.path / name
        staging = self.path / f".{name}.{uuid.uuid4().hex[:8]}"
        write(str(staging))  # Spark's own writer, on the workers
        old = None
        if final.exists():
            old = self.path / f".{name}.old.{uuid.uuid4().hex[:8]}"
            final.rename(old)
        staging.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        registered = self.backend.read_parquet(str(final), table_name=name)
        return int(registered.count().execute())

    def close(self) -> None:
        if self.owns_session:
            self.session.stop()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _session(master: str, lake: Path, driver_memory: str | None = None) -> Any:
    """A Spark session for ``master``: UTC, no UI, its scratch space in a temporary folder,
    bound to loopback when local (a test never listens on another interface); the driver's
    heap ``driver_memory`` (default ``[spark] driver_memory``'s)."""
    from pyspark.sql import SparkSession

    from jingzhun.config import SparkSettings

    memory = driver_memory or SparkSettings().driver_memory

    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Local Python workers run this interpreter (PySpark's default is python3 on PATH:
        # under a virtualenv, one without jingzhun or pyarrow).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    scratch = tempfile.mkdtemp(prefix="jingzhun-spark-")
    # Spark's own log lines and progress bars are not the command's output: errors only.
    quiet = Path(scratch) / "log4j2.properties"
    quiet.write_text(
        "rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\nappender.console.name = console\n"
        "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = spark: %p %c{1}: %m%n\n"
        # A log line, not a Java stack trace: the command's own error says what failed.
        "appender.console.layout.alwaysWriteExceptions = false\n"
        # A failed task is the command's error, said once by the command.
        "logger.task.name = org.apache.spark.executor.Executor\nlogger.task.level = off\n"
        "logger.set.name = org.apache.spark.scheduler.TaskSetManager\nlogger.set.level = off\n",
        encoding="utf-8",
    )
    builder = (
        SparkSession.builder.master(master)
        .appName(f"jingzhun {lake.name}")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        # pandas frames in and out of Spark through Arrow, not row by row.
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # A table's partition folders (batch ids, dates) stay text.
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.local.dir", scratch)
        .config("spark.sql.warehouse.dir", str(Path(scratch) / "warehouse"))
        # A profile build at 1M users needs more than Spark's default 1g (a join's broadcast
        # side alone is ~120 MB), and the throughput collector suits batch jobs: at 10M
        # events the build took 139 s with both, 177 s without (docs/scaling.md).
        .config("spark.driver.memory", memory)
        .config(
            "spark.driver.extraJavaOptions",
            f"-Duser.timezone=UTC -XX:+UseParallelGC -Dlog4j2.configurationFile=file:{quiet}",
        )
    )
    if master.startswith("local"):
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
            "spark.driver.host", "127.0.0.1"
        )
    try:
        return builder.getOrCreate()
    except Exception as exc:  # Spark's Java gateway: no JVM, a bad option, ...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise SparkUnavailable(
            f"Spark did not start ({first})",
            hint="check the Java runtime (JAVA_HOME) and the master URL",
        ) from None


def create_from_store(store: Store, path: str | os.PathLike[str]) -> dict[str, int]:
    """Make a lake at ``path`` (a new or empty folder) from ``store``'s tables
    (:data:`LAKE_TABLES`): each written as Parquet by DuckDB, then the marker, last — a lake
    half made has no marker and is refused. How many rows a table."""
    from jingzhun.store.store import check_store_path

    where = check_lake(Path(path).expanduser().absolute(), create=True)
    if (where / MARKER).exists():
        raise InputError(f"{where} is a jingzhun lake already", hint="name a new folder")
    try:  # the personal store is a DuckDB file in the folder: its name must be one
        check_store_path(where / PERSONAL)
    except InputError:
        raise InputError(
            f"{str(where)[:80]!r} cannot hold a lake: its personal store's file name would "
            "not be usable",
            hint="name a folder without control characters or '?'",
        ) from None
    made = not where.exists()
    where.mkdir(parents=True, exist_ok=True)
    try:
        counts = _write_tables(store, where)
        _personal_from_store(store, where / PERSONAL)
        _write_marker(where, counts)
    except BaseException:  # nothing half made is left: the folder as it was (new, or empty)
        if made:
            shutil.rmtree(where, ignore_errors=True)
        else:
            for child in where.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return counts


def _write_tables(store: Store, where: Path) -> dict[str, int]:
    """Each of :data:`LAKE_TABLES` as one Parquet file in its folder; rows a table."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for name in LAKE_TABLES:
        folder = where / name
        folder.mkdir()
        # Streamed in batches through pyarrow: the store's connection may not write files
        # (enable_external_access is off), and a table need not fit in memory.
        reader = store.con.sql(f"SELECT * FROM {ident(name)}").to_arrow_reader(1 << 17)
        rows = 0
        with pq.ParquetWriter(folder / "part-0.parquet", reader.schema) as out:
            for batch in reader:
                out.write_batch(batch)
                rows += batch.num_rows
        counts[name] = rows
    return counts


def _personal_from_store(store: Store, path: Path) -> None:
    """The store's personal data (sealed records) and its vault's wrapped keys into the lake's
    personal store, with the store's key file beside it: the same keys open the same records,
    so a users batch on the lake merges into the personal data the store held."""
    from jingzhun.store.store import Store
    from jingzhun.store.vault import key_file, vault_meta

    meta = vault_meta(store)
    pii = store.con.sql("SELECT * FROM pii").to_arrow_table()
    if not meta and not pii.num_rows:
        return  # the store has no vault: the lake's is made by its first users batch
    source_key = key_file(store.path)
    if source_key.exists():
        target_key = key_file(path)
        fd = os.open(target_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source_key.read_bytes())
    personal = Store.open(path)
    try:
        with personal.transaction() as con:
            con.executemany(
                "INSERT INTO store_meta VALUES (?, ?)", [[k, v] for k, v in meta.items()]
            )
            personal.insert_arrow("pii", pii)
    finally:
        personal.close()


def store_tables(*names: str) -> dict[str, pa.Table]:
    """The store's tables ``names``, empty: their columns and types from the store's
    migrations (the one definition of the schema), for a lake table a stage makes."""
    from jingzhun.store.store import Store

    with tempfile.TemporaryDirectory(prefix="jingzhun-lake-") as scratch:
        store = Store.open(Path(scratch) / "schema.duckdb")
        try:
            return {
                name: store.con.sql(f"SELECT * FROM {ident(name)} LIMIT 0").to_arrow_table()
                for name in names
            }
        finally:
            store.close()


def table_names(lake: Path) -> list[str]:
    """The tables of the lake at ``lake``: its folders of Parquet, hidden ones (being written,
    staging) left out."""
    return sorted(
        p.name for p in lake.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def has_table(lake: Path, name: str) -> bool:
    """Whether the lake at ``lake`` has table ``name``: a folder with Parquet files."""
    folder = lake / name
    return folder.is_dir() and any(folder.glob("*.parquet"))


def column_names(lake: Path, name: str) -> list[str]:
    """The columns of the lake table ``name`` (from its Parquet footers); none without it."""
    import pyarrow.dataset as pads

    if not has_table(lake, name):
        return []
    return list(pads.dataset(lake / name, format="parquet").schema.names)


def check_outside(lake: str | os.PathLike[str], target: Path, out: str | os.PathLike[str]) -> None:
    """Refuse ``target`` (the resolved path of ``--out out``) inside the lake: a file there
    could be read as part of a table."""
    root = Path(os.path.realpath(lake))
    if target == root or root in target.parents:
        raise InputError(
            f"--out {out} is inside the lake {lake}",
            hint="name a file outside the lake's folder: one inside could be read as a table",
        )


def read_rows(lake: Path, name: str, where: Any = None) -> pa.Table | None:
    """The lake table ``name``'s rows matching ``where`` (a ``pyarrow.dataset`` expression) as
    Arrow, read on this machine by pyarrow without Spark, times as the store holds them (UTC,
    without a zone: Spark writes them UTC-adjusted); None when the lake has no such table.

    For the commands that read a few rows of a lake — one user's, a run's members, the tags —
    into a scratch store and answer there with the store's own code: a JVM's start (~10 s)
    would be most of their time. A filter on a column the rows are not sorted by still reads
    that column whole (~1 s for 10M events)."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    if not has_table(lake, name):
        return None
    # One batch read ahead: a filter on 10M events then peaks at ~0.7 GB, not ~1 GB.
    scan = pads.dataset(lake / name, format="parquet").scanner(
        filter=where, batch_readahead=1, fragment_readahead=1
    )
    rows = scan.to_table()
    naive = pa.schema(
        pa.field(f.name, pa.timestamp(f.type.unit), f.nullable, f.metadata)
        if pa.types.is_timestamp(f.type) and f.type.tz is not None
        else f
        for f in rows.schema
    )
    return rows.cast(naive) if naive != rows.schema else rows


def _create_empty(where: Path) -> None:
    """A new lake: :data:`LAKE_TABLES` empty, with the store's columns (from its migrations,
    the one definition of the schema), then the marker."""
    import pyarrow.parquet as pq

    where.mkdir(parents=True, exist_ok=True)
    for name, empty in store_tables(*LAKE_TABLES).items():
        (where / name).mkdir()
        pq.write_table(empty, where / name / "part-empty.parquet")
    _write_marker(where, dict.fromkeys(LAKE_TABLES, 0))


def _write_marker(where: Path, counts: dict[str, int]) -> None:
    (where / MARKER).write_text(
        json.dumps({"format": FORMAT, "tables": counts}, indent=2) + "\n", encoding="utf-8"
    )


__all__ = [
    "DEFAULT_MASTER",
    "LAKE_TABLES",
    "MARKER",
    "PERSONAL",
    "Lake",
    "SparkUnavailable",
    "check_java",
    "check_lake",
    "check_master",
    "check_outside",
    "check_pyspark",
    "column_names",
    "create_from_store",
    "has_table",
    "read_rows",
    "store_tables",
    "table_names",
]
