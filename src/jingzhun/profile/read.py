"""What other parts read of the profile stage's tables: profiles, category affinity and tags.

The report, the CLI, the coming server and the campaign stage call these functions instead of
querying ``profiles``, ``profile_affinity`` or ``tags``. Besides those tables they read only
what lies below the profile stage (``events`` and ``identities``, for a user's devices and
latest events). Every value reaches DuckDB as a ``?`` parameter.

Examples
--------
>>> from jingzhun.profile import read                                   # doctest: +SKIP
>>> read.user_profile(store, "u42", events=3)["tags"]["rfm_segment"]    # doctest: +SKIP
'Champions'
>>> read.overview(store).repeat_customers                               # doctest: +SKIP
812
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest import consent
from jingzhun.profile.build import profile_columns, require_profiles
from jingzhun.store import Store, engines
from jingzhun.store.export import BATCH_ROWS, copy_out, export_target, write_batches
from jingzhun.store.sql import Sql, ident

if TYPE_CHECKING:
    from jingzhun.store.lake import Lake

__all__ = [
    "ProfileOverview",
    "affinity_shares",
    "check_lake_export",
    "customers",
    "export_profiles",
    "export_profiles_on_lake",
    "find_users",
    "has_profiles",
    "load_tags_from_lake",
    "load_user_from_lake",
    "overview",
    "profile_rows",
    "profile_scores",
    "profiles_frame",
    "require_lake_profiles",
    "rfm_segment_counts",
    "tag_counts",
    "tagged",
    "user_activity",
    "user_profile",
]

#: How :func:`find_users` may order what it finds.
FIND_ORDERS = ("user_id", "monetary")


@dataclass(frozen=True)
class ProfileOverview:
    """Headline figures of the built profiles.

    Attributes
    ----------
    users : int
        Users profiled.
    as_of : datetime or None
        The time the profiles were built as of (None when there are none).
    customers : int
        Users with at least one order.
    repeat_customers : int
        Users with two orders or more.
    median_recency_days : float or None
        The median of ``recency_days`` over customers (None without customers).
    mean_aov : float or None
        The mean order value over customers (None without customers).
    """

    users: int
    as_of: datetime | None
    customers: int
    repeat_customers: int
    median_recency_days: float | None
    mean_aov: float | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = None if self.as_of is None else self.as_of.isoformat(sep=" ")
        return d


def _plain(value: Any) -> Any:
    """A DataFrame cell as a plain Python value (for JSON and display)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        value = value.tolist()
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # a map: [(key, value)]
        return {k: v for k, v in value}
    return value


def has_profiles(store: Store) -> bool:
    """Whether profiles were built in this store (``jingzhun profile build``).

    Returns
    -------
    bool
    """
    return bool(store.columns("profiles"))


def overview(store: Store) -> ProfileOverview:
    """How many users are profiled, as of when, and the customers' headline figures.

    Returns
    -------
    ProfileOverview

    Raises
    ------
    NotFoundError
        If no profiles were built.
    """
    require_profiles(store)
    users, as_of, buyers, repeat, recency, aov = store.rows(
        """
        SELECT count(*), max(as_of), count(*) FILTER (WHERE frequency >= 1),
               count(*) FILTER (WHERE frequency >= 2), median(recency_days), avg(aov)
        FROM profiles
        """
    )[0]
    return ProfileOverview(
        users=int(users),
        as_of=as_of,
        customers=int(buyers),
        repeat_customers=int(repeat),
        median_recency_days=None if recency is None else float(recency),
        mean_aov=None if aov is None else float(aov),
    )


def rfm_segment_counts(store: Store) -> pd.DataFrame:
    """Users per RFM segment (the ``rfm_segment`` tag).

    Returns
    -------
    DataFrame
        ``segment`` and ``users``, largest segment first (ties by name); empty before a
        profile build.
    """
    return store.sql(
        "SELECT value AS segment, count(*) AS users FROM tags WHERE tag = 'rfm_segment' "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    ).df()


def customers(store: Store) -> pd.DataFrame:
    """The RFM traits and profile score of every customer (a user with an order).

    Returns
    -------
    DataFrame
        ``recency_days``, ``frequency``, ``monetary``, ``score``, one row per customer, in
        no particular order.

    Raises
    ------
    NotFoundError
        If no profiles were built.
    """
    require_profiles(store)
    return store.sql(
        "SELECT recency_days, frequency, monetary, score FROM profiles WHERE frequency >= 1"
    ).df()


def affinity_shares(store: Store) -> pd.DataFrame:
    """Each category's affinity averaged over the users who have any (their shares sum to 1).

    Returns
    -------
    DataFrame
        ``category`` and ``share``, smallest share first.

    Raises
    ------
    NotFoundError
        If no profiles were built.
    """
    require_profiles(store)
    return store.sql(
        """
        SELECT category, sum(score) / (SELECT count(DISTINCT user_id) FROM profile_affinity) AS share
        FROM profile_affinity GROUP BY 1 ORDER BY 2
        """
    ).df()


def profile_scores(store: Store) -> pd.Series:
    """The profile score P(u) of every profiled user.

    Returns
    -------
    Series
        ``score``, one value per profiled user, in no particular order.

    Raises
    ------
    NotFoundError
        If no profiles were built.
    """
    require_profiles(store)
    return store.sql("SELECT score FROM profiles").df()["score"]


def user_profile(store: Store, user_id: str, *, events: int = 10) -> dict[str, Any]:
    """One user's traits, tags, linked devices and latest events.

    Parameters
    ----------
    user_id : str
        A user id, or an anonymous id that was linked to a user (the user's profile is shown).
    events : int
        How many of the latest events to include (0 to ``MAX_ROWS``), the user's own and those
        of the anonymous ids linked to them.

    Returns
    -------
    dict
        ``user_id`` (the user's, also when a device id was given), ``traits`` (every profile
        column, as plain values), ``tags`` (tag -> value), ``anonymous_ids`` (oldest link
        first), ``last_events`` (newest first: ts, event, item_id, order_id, revenue,
        channel) and ``consents`` (in force per purpose and channel: status, ts, source).

    Raises
    ------
    InputError
        If ``events`` is not a whole number in range.
    NotFoundError
        If no profiles were built, or neither a profile nor a linked device has that id.
    """
    events = bounded_int(events, "--events", lo=0, hi=MAX_ROWS)
    require_profiles(store)
    row = store.sql("SELECT * FROM profiles WHERE user_id = ?", [user_id]).df()
    if row.empty:
        linked = store.scalar("SELECT user_id FROM identities WHERE anonymous_id = ?", [user_id])
        if linked is None:
            raise NotFoundError(
                f"no profile for user {user_id!r}",
                hint="check the id, or rebuild: jingzhun profile build",
            )
        row = store.sql("SELECT * FROM profiles WHERE user_id = ?", [linked]).df()
        if row.empty:
            raise NotFoundError(
                f"no profile for user {linked!r}, the owner of device {user_id!r}",
                hint="rebuild: jingzhun profile build",
            )
        user_id = linked
    traits = {k: _plain(v) for k, v in row.iloc[0].items()}
    tags = store.rows(
        "SELECT tag, value, source FROM tags WHERE user_id = ? ORDER BY source, tag", [user_id]
    )
    devices = [
        r[0]
        for r in store.rows(
            "SELECT anonymous_id FROM identities WHERE user_id = ? ORDER BY linked_at", [user_id]
        )
    ]
    recent = store.sql(
        """
        SELECT ts, event, item_id, order_id, revenue, channel FROM events
        WHERE user_id = ? OR anonymous_id IN (SELECT anonymous_id FROM identities WHERE user_id = ?)
        ORDER BY ts DESC LIMIT ?
        """,
        [user_id, user_id, events],
    ).df()
    held = store.sql(consent.current_query(), [user_id, user_id]).df()
    return {
        "user_id": user_id,
        "traits": traits,
        "tags": {t: v for t, v, _ in tags},
        "anonymous_ids": devices,
        "last_events": [{k: _plain(v) for k, v in r.items()} for r in recent.to_dict("records")],
        "consents": [
            {k: _plain(v) for k, v in r.items() if k != "user_id"} for r in held.to_dict("records")
        ],
    }


def profiles_frame(
    store: Store, columns: Sequence[str] | None = None, *, user_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """The profiles table, or some of its columns, ordered by user id.

    Parameters
    ----------
    columns : sequence of str, optional
        Column names to return, in this order (default: every column).
    user_ids : sequence of str, optional
        Only these users' rows (default: every user's).

    Returns
    -------
    DataFrame

    Raises
    ------
    NotFoundError
        If no profiles were built.
    InputError
        If a column name is empty, too long or holds control characters.
    """
    require_profiles(store)
    cols = ", ".join(ident(c) for c in columns) if columns else "*"
    if user_ids is None:
        return store.sql(f"SELECT {cols} FROM profiles ORDER BY user_id").df()
    return store.sql(
        f"SELECT {cols} FROM profiles WHERE user_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY user_id",
        [list(user_ids)],
    ).df()


def profile_rows(
    store: Store, user_ids: Sequence[str], *, table: str = "profiles"
) -> list[dict[str, Any]]:
    """Some users' profiles as plain dicts (None for missing values), for loops over members
    that pandas' per-row cost would slow. ``table``: the relation on the store's connection
    that holds them (a lake's rows handed over as Arrow; default the store's)."""
    if table == "profiles":
        require_profiles(store)
    cursor = store.sql(
        f"SELECT * FROM {ident(table)} WHERE user_id IN (SELECT unnest(?::VARCHAR[]))",
        [list(user_ids)],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def tag_counts(store: Store) -> pd.DataFrame:
    """Every tag value with how many users carry it.

    Returns
    -------
    DataFrame
        ``tag``, ``value``, ``source``, ``users`` and ``computed_at`` (the latest), ordered by
        source, tag and most users first.
    """
    return store.sql(
        "SELECT tag, value, source, count(*) AS users, max(computed_at) AS computed_at FROM tags "
        "GROUP BY ALL ORDER BY source, tag, users DESC"
    ).df()


def export_profiles(store: Store, out: str | os.PathLike[str]) -> int:
    """Write the profiles to Parquet or CSV (by the file's extension), ordered by user id.

    CSV has no lists or maps: those columns are written as JSON text.

    Parameters
    ----------
    out : str or path-like
        The file to write (``--out``), replaced atomically; see
        :func:`jingzhun.store.export.copy_out`.

    Returns
    -------
    int
        The rows written.

    Raises
    ------
    NotFoundError
        If no profiles were built.
    InputError
        If ``out`` may not be written or is neither ``.parquet`` nor ``.csv``.
    """
    kinds = profile_columns(store)
    select = _export_select(kinds, csv=Path(out).suffix.lower() == ".csv")
    return copy_out(store, f"SELECT {select} FROM profiles ORDER BY user_id", out)


def _export_select(kinds: dict[str, str], *, csv: bool) -> Sql:
    """The export's one select list over the profiles' columns (name -> DuckDB type): each
    column as it is; in CSV, which has no lists or maps, those as JSON text; a timestamp of
    another kind than DuckDB's ``TIMESTAMP`` (Spark writes nanosecond INT96 or UTC-adjusted
    ones to a lake) as ``TIMESTAMP``, so a lake's export has the store's types."""
    parts: list[Sql] = []
    for c, t in kinds.items():
        if csv and ("[]" in t or t.startswith("MAP")):
            parts.append(f"to_json({ident(c)})::VARCHAR AS {ident(c)}")
        elif t.startswith("TIMESTAMP") and t != "TIMESTAMP":
            parts.append(f"CAST({ident(c)} AS TIMESTAMP) AS {ident(c)}")
        else:
            parts.append(ident(c))
    return ", ".join(parts)


def check_lake_export(
    lake_path: str | os.PathLike[str], out: str | os.PathLike[str]
) -> tuple[Path, str]:
    """The file ``profile export --out`` writes from a lake, and its format, checked before
    Spark starts: a path :func:`export_profiles` would take, and not inside the lake (a file
    there could be read as part of a table)."""
    from jingzhun.store.lake import check_outside

    target, suffix = export_target(out)
    check_outside(lake_path, target, out)
    return target, suffix


def export_profiles_on_lake(lake: Lake, out: str | os.PathLike[str]) -> int:
    """:func:`export_profiles` from a lake (``--engine spark``): the same file — the same
    columns, types and rows, in user id order; lists and maps as JSON text in CSV.

    Spark sorts the lake's ``profiles`` by user id into a hidden folder of the lake (its part
    files in order); the parts are then streamed, in order, through :func:`_export_select` — the
    select list the store's export runs, here in an in-memory DuckDB — to the file, so memory
    stays bounded by one batch however many profiles there are. The hidden folder is removed.
    """
    target, suffix = check_lake_export(lake.path, out)
    if "profiles" not in lake.tables():
        raise NotFoundError("no profiles in the lake yet", hint=LAKE_BUILD_HINT)
    staging = lake.path / f".export-{uuid.uuid4().hex[:8]}"
    try:
        lake.backend.to_parquet(lake.table("profiles").order_by("user_id"), staging)
        parts = sorted(str(f) for f in staging.glob("part-*.parquet"))
        if not parts:  # pragma: no cover - Spark writes an empty part for no rows
            raise NotFoundError("no profiles in the lake yet", hint=LAKE_BUILD_HINT)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")  # a UTC-adjusted timestamp read as its UTC time
        kinds = {
            str(r[0]): str(r[1])
            for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [parts[0]]).fetchall()
        }
        select = _export_select(kinds, csv=suffix == ".csv")
        query: Sql = f"SELECT {select} FROM read_parquet(?)"
        first = con.sql(query, params=[parts[0]]).to_arrow_reader(BATCH_ROWS)

        def batches() -> Iterator[pa.RecordBatch]:
            yield from first
            for part in parts[1:]:  # one at a time, in the sort's order
                yield from con.sql(query, params=[part]).to_arrow_reader(BATCH_ROWS)

        schema = first.schema
        return write_batches(batches(), target, suffix, schema)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: How to build a lake's profiles.
LAKE_BUILD_HINT = "build them with: jingzhun --engine spark --db LAKE profile build"


def require_lake_profiles(path: str | os.PathLike[str]) -> Path:
    """The lake at ``path`` if it has profiles: checked on its folder, before Spark starts;
    a :class:`NotFoundError` naming the lake otherwise (an :class:`InputError` when it is not
    a lake)."""
    from jingzhun.store.lake import check_lake

    where = check_lake(Path(path).expanduser().absolute(), create=False)
    if not (where / "profiles").is_dir():
        raise NotFoundError(f"no profiles in the lake {path} yet", hint=LAKE_BUILD_HINT)
    return where


def load_user_from_lake(lake: Path, store: Store, user_id: str) -> None:
    """What :func:`user_profile` reads of ``user_id`` (a user's id or a linked device's), read
    from the lake into ``store`` (a new scratch store): the profiles of the user and of the
    device's owner, their tags, links, consents and every event of theirs and of their
    devices. ``profile show --engine spark`` then answers with :func:`user_profile` itself.
    Read by pyarrow, without Spark (:func:`~jingzhun.store.lake.read_rows`)."""
    import pyarrow.dataset as pads

    from jingzhun.store.lake import read_rows

    require_lake_profiles(lake)
    f = pads.field
    owned = read_rows(lake, "identities", f("anonymous_id") == user_id)
    ids = {user_id, *(owned.column("user_id").to_pylist() if owned else [])}
    owners = pa.array(sorted(ids), pa.string())
    links = read_rows(
        lake, "identities", f("user_id").isin(owners) | (f("anonymous_id") == user_id)
    )
    devices = links.column("anonymous_id").unique() if links else pa.array([], pa.string())
    profiles = read_rows(lake, "profiles", f("user_id").isin(owners))
    store.create_arrow("profiles", profiles)
    for name, where in (
        ("identities", None),
        ("tags", f("user_id").isin(owners)),
        ("consents", f("user_id").isin(owners)),
        ("events", f("user_id").isin(owners) | f("anonymous_id").isin(devices)),
    ):
        rows = links if where is None else read_rows(lake, name, where)
        if rows is not None:
            store.insert_arrow(name, rows)


def load_tags_from_lake(lake: Path, store: Store) -> None:
    """The lake's ``tags`` in ``store`` (a new scratch store), for :func:`tag_counts`:
    ``tags list --engine spark``. Read by pyarrow, without Spark."""
    from jingzhun.store.lake import read_rows

    require_lake_profiles(lake)
    rows = read_rows(lake, "tags")
    if rows is not None:
        store.insert_arrow("tags", rows)


def tagged(backend: Any, tag: str, value: str | None = None, *, param: str = "tags") -> ir.Table:
    """The ``user_id`` of every user with ``tag`` (and that ``value``, if given), as an Ibis
    expression over ``backend`` (a store's DuckDB or a lake's Spark).

    Raises
    ------
    NotFoundError
        If no user has the tag (the message lists the tags there are), or none has it with
        ``value``.
    """
    tags = backend.table("tags")
    known = sorted(engines.column(backend, tags.select("tag").distinct(), "tag"))
    if tag not in known:
        listed = ", ".join(known[:40]) + (" …" if len(known) > 40 else "")
        raise NotFoundError(
            f"{param}: no user has the tag {tag!r}",
            hint=f"the tags are {listed}"
            if known
            else "build profiles first (jingzhun profile build)",
        )
    rows = tags.filter(tags.tag == tag)
    if value is not None:
        if not engines.scalar(backend, rows.filter(rows.value == value).count()):
            values = engines.column(
                backend, rows.select("value").distinct().order_by("value").limit(41), "value"
            )
            listed = ", ".join(values[:40]) + (" …" if len(values) > 40 else "")
            raise NotFoundError(
                f"{param}: no user has {tag}={value[:60]!r}", hint=f"its values are {listed}"
            )
        rows = rows.filter(rows.value == value)
    return rows.select("user_id").distinct()


def find_users(
    store: Store, prefix: str = "", *, limit: int = 20, by: str = "user_id"
) -> pd.DataFrame:
    """Profiled users whose id starts with ``prefix``: what a search box lists as one types.

    Parameters
    ----------
    prefix : str
        The beginning of the id, compared as it is (no wildcards: ``%`` and ``_`` are
        characters like any other); ``""`` matches every user.
    limit : int
        At most this many users (1 to ``MAX_ROWS``); ask one more than you show to know
        whether there are more.
    by : {"user_id", "monetary"}
        The order: by id, or the biggest spenders first (ties by id).

    Returns
    -------
    DataFrame
        ``user_id``, ``frequency``, ``monetary``, ``last_seen``, ``days_since_seen`` and
        ``rfm_segment`` (the tag's value; missing for a user without orders or tag).

    Raises
    ------
    NotFoundError
        If no profiles were built.
    InputError
        If ``limit`` is out of range or ``by`` is not one of :data:`FIND_ORDERS`.
    """
    limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    if by not in FIND_ORDERS:
        raise InputError(
            f"by: {str(by)[:40]!r} is not an order", hint=f"use {' or '.join(FIND_ORDERS)}",
            param="by",
        )  # fmt: skip
    require_profiles(store)
    order = "p.user_id" if by == "user_id" else "p.monetary DESC NULLS LAST, p.user_id"
    return store.sql(
        f"""
        SELECT p.user_id, p.frequency, p.monetary, p.last_seen, p.days_since_seen,
               t.value AS rfm_segment
        FROM profiles p
        LEFT JOIN tags t ON t.user_id = p.user_id AND t.tag = 'rfm_segment'
        WHERE starts_with(p.user_id, ?)
        ORDER BY {order} LIMIT ?
        """,
        [str(prefix), limit],
    ).df()


def user_activity(store: Store, user_id: str) -> pd.DataFrame:
    """One user's events counted per week and event, their linked devices' included: the
    shape of their activity over time (custom events, not yet mapped, are left out).

    Parameters
    ----------
    user_id : str
        The user (a user id, not a device id).

    Returns
    -------
    DataFrame
        ``week`` (the Monday, 00:00, of the week), ``event`` and ``n``, oldest week first
        (events by name within a week); empty for a user without events.
    """
    return store.sql(
        """
        SELECT date_trunc('week', ts) AS week, event, count(*) AS n FROM events
        WHERE (user_id = ?
               OR anonymous_id IN (SELECT anonymous_id FROM identities WHERE user_id = ?))
          AND NOT coalesce(custom, FALSE)
        GROUP BY ALL ORDER BY week, event
        """,
        [user_id, user_id],
    ).df()
