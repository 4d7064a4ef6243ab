"""A person's data in a lake (``--engine spark``): ``privacy export`` and ``erase`` with the
store's code.

A lake keeps a person in two places: their rows in its Parquet tables (events, identities,
users, consents, profiles, tags, segment members, scores …) and their sealed personal data in
its personal store (``LAKE/personal.duckdb``, :data:`~jingzhun.store.lake.PERSONAL`: the
vault's keys and ``pii``). Their rows are found by pyarrow on this machine, filtered as it
reads (:func:`_person`): every lake table with a ``user_id`` column, events and identities by
the person's devices too — the rows the store's :func:`~jingzhun.privacy.subject.erase`
deletes.

**Export** opens the personal store, reads the person's rows into it inside a transaction
with the lake's quarantine, runs the store's :func:`~jingzhun.privacy.subject.export` there,
and rolls the rows back: the personal store keeps only the audit entry, as a store does. No
Spark starts.

**Erase** finds the same rows and the quarantined ones that mention the person (the store's
:func:`~jingzhun.privacy.subject.quarantined_rows`, in the personal store), then Spark rewrites
each lake table that holds any of them without them (one rename a table; the cleaning flags
of their events too), and last the personal store, in one transaction, drops their personal
data and records the erasure and an audit entry (keyed tokens only). A lake has no
transaction across tables: an erase stopped half way has removed the person from some tables,
and running it again finds the rest (the personal data goes last, so the person is still
found).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jingzhun.contracts.time import utcnow
from jingzhun.errors import NotFoundError
from jingzhun.privacy import audit
from jingzhun.privacy import subject as subj
from jingzhun.store.lake import PERSONAL, column_names, read_rows, table_names
from jingzhun.store.store import Store
from jingzhun.store.vault import vault_for

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from jingzhun.config import Settings
    from jingzhun.store.lake import Lake

#: Lake tables a person's anonymous ids (devices) are found in, besides their user id.
_BY_DEVICE = ("events", "identities")
#: Lake tables keyed by event: the rows of an erased person's events go with them.
_BY_EVENT = ("event_flags", "removed_events")


@dataclass
class Person:
    """A person's rows in a lake (:func:`find_person`): their devices and, per table holding
    any, their rows."""

    user_id: str
    devices: pa.Array
    rows: dict[str, pa.Table]

    @property
    def found(self) -> int:
        return sum(t.num_rows for t in self.rows.values())


def _person(lake: Path, user_id: str) -> Person:
    import pyarrow as pa
    import pyarrow.dataset as pads

    f = pads.field
    links = read_rows(lake, "identities", f("user_id") == user_id)
    devices = links.column("anonymous_id").unique() if links else pa.array([], pa.string())
    rows: dict[str, pa.Table] = {}
    for name in table_names(lake):
        columns = column_names(lake, name)
        if name == "pii" or "user_id" not in columns:
            continue
        where = f("user_id") == user_id
        if name in _BY_DEVICE and "anonymous_id" in columns:
            where = where | f("anonymous_id").isin(devices)
        found = read_rows(lake, name, where)
        if found is not None and found.num_rows:
            rows[name] = found
    return Person(user_id, devices, rows)


def find_person(lake: Path, settings: Settings, user_id: str) -> Person:
    """``user_id``'s rows in the lake at ``lake``, found without Spark (an erase checks there
    is someone to erase before Spark starts); a :class:`NotFoundError` naming the lake when
    neither its tables nor its personal store hold them."""
    person = _person(lake, user_id)
    if not person.found:
        personal = Store.open(lake / PERSONAL, settings)
        try:
            held = personal.scalar("SELECT count(*) FROM pii WHERE user_id = ?", [user_id])
        finally:
            personal.close()
        if not held:
            raise NotFoundError(
                f"no user {user_id[:80]!r} in the lake {lake}",
                hint="check the id (privacy find --email ADDRESS finds a user by address on "
                "the DuckDB store)",
            )
    return person


def _in_personal(personal: Store, lake: Path, rows: dict[str, pa.Table]) -> None:
    """``rows`` (by table) and the lake's quarantine into the personal store, inside the
    caller's transaction: tables it lacks (profiles, the lake's own) made from the rows."""
    for name, table in rows.items():
        if personal.columns(name):
            personal.insert_arrow(name, table)
        else:
            personal.create_arrow(name, table)
    quarantine = read_rows(lake, "quarantine")
    if quarantine is not None:
        personal.insert_arrow("quarantine", quarantine)


def export_from_lake(lake: Path, settings: Settings, user_id: str, *, actor: str) -> dict[str, Any]:
    """Everything the lake at ``lake`` holds about ``user_id`` — the object
    :func:`jingzhun.privacy.subject.export` gives for a store, personal data decrypted — and an
    audit entry in the lake's personal store."""
    person = find_person(lake, settings, user_id)
    personal = Store.open(lake / PERSONAL, settings)
    try:
        personal.con.execute("BEGIN TRANSACTION")
        try:
            _in_personal(personal, lake, person.rows)
            data = subj.export(personal, user_id)
        finally:
            personal.con.execute("ROLLBACK")  # the rows read stay the lake's only
        audit.record(
            personal,
            actor,
            "privacy.export",
            subject=subj.subject_token(personal, user_id),
            detail={"tables": sorted(data["tables"]), "engine": "spark"},
        )
        return data
    finally:
        personal.close()


def erase_on_lake(lake: Lake, settings: Settings, person: Person, *, actor: str) -> subj.Erasure:
    """Remove the ``person`` (:func:`find_person`) from every table of the lake (their
    devices' rows too) and their personal data from its personal store; record the erasure
    and an audit entry there."""
    import ibis
    import pyarrow.dataset as pads

    user_id, devices = person.user_id, person.devices.to_pylist()
    personal = Store.open(lake.path / PERSONAL, settings)
    try:
        vault = vault_for(personal, create=True)
        assert vault is not None
        personal.con.execute("BEGIN TRANSACTION")
        try:
            _in_personal(personal, lake.path, {})
            mentions = subj.quarantined_rows(personal, {user_id, *devices})
        finally:
            personal.con.execute("ROLLBACK")
        counts = {name: rows.num_rows for name, rows in person.rows.items()}
        if "events" in person.rows:  # their events' cleaning flags
            events = person.rows["events"].column("event_id")
            for name in _BY_EVENT:
                flagged = read_rows(lake.path, name, pads.field("event_id").isin(events))
                if flagged is not None and flagged.num_rows:
                    t = lake.table(name)
                    lake.write(name, t.filter(~t.event_id.isin(events.to_pylist())))
                    counts[name] = flagged.num_rows
        for name in sorted(person.rows):
            t = lake.table(name)
            mine = (t.user_id == user_id).fill_null(False)
            if name in _BY_DEVICE and devices:
                mine = mine | t.anonymous_id.isin(devices).fill_null(False)
            if name in subj.KEEP_WITHOUT_ID:
                lake.write(
                    name, t.mutate(user_id=ibis.ifelse(mine, ibis.null("string"), t.user_id))
                )
            else:
                lake.write(name, t.filter(~mine))
        if mentions:
            ids = [int(r["quarantine_id"]) for r in mentions]
            t = lake.table("quarantine")
            lake.write("quarantine", t.filter(~t.quarantine_id.isin(ids)))
            counts["quarantine"] = len(ids)
        now = utcnow()
        subject = vault.subject(user_id)
        with personal.transaction() as con:
            counts["pii"] = personal.run("DELETE FROM pii WHERE user_id = ?", [user_id]) or 0
            con.execute("INSERT INTO erasures VALUES (?, ?)", [subject, now])
            audit.record(
                personal,
                actor,
                "privacy.erase",
                subject=subject,
                detail={
                    "rows": {k: v for k, v in counts.items() if v},
                    "anonymous_ids": len(devices),
                    "engine": "spark",
                },
            )
        personal.con.execute("CHECKPOINT")  # the WAL's copy of the deleted rows goes now
        runs = read_rows(lake.path, "segment_runs")
        return subj.Erasure(
            subject=subject,
            erased_at=now,
            rows={k: v for k, v in sorted(counts.items()) if v},
            anonymous_ids=len(devices),
            models_holding_erased=sorted(runs.column("run_id").to_pylist()) if runs else [],
        )
    finally:
        personal.close()


__all__ = ["Person", "erase_on_lake", "export_from_lake", "find_person"]
