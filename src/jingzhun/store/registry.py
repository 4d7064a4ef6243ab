"""The one registry of trained things: segment runs, recommenders, predict models.

Every stage that fits something records it here, in the store's ``models`` table: one id
scheme (``SERIES-N``, unique across kinds), one active model per kind (per name for segment
runs, so a shop can keep a "value" and a "lifecycle" segmentation side by side), and the fitted
state itself as ``.npz`` bytes (no pickle) in the same row. A store is therefore one file:
copied, renamed or backed up, its models go with it.

A model and what it produces are written in one transaction: :meth:`Registry.saving` opens it,
allocates the id, records the row (active) and hands the connection to the stage, which writes
its outputs (a run's members, CLV scores) before the commit. Nothing half-made is left on
failure, and no other process ever sees an active model without its outputs.

Examples
--------
>>> reg = Registry(store)                                            # doctest: +SKIP
>>> with reg.saving(kind="clv", name="clv", method="bgnbd", params={}) as saved:
...     saved.con.execute("INSERT INTO scores …")                   # same transaction
>>> reg.get(saved.model_id).active
True
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jingzhun.checks import shown
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.store.sql import Sql

if TYPE_CHECKING:
    import duckdb

    from jingzhun.store.store import Store

log = logging.getLogger(__name__)

#: The kinds of trained things, and the stage (and CLI command) that fits each.
KINDS: dict[str, str] = {
    "segment": "jingzhun segment run",
    "recommender": "jingzhun recommend train",
    "propensity": "jingzhun predict train --target propensity",
    "churn": "jingzhun predict train --target churn",
    "clv": "jingzhun predict clv",
    "uplift": "jingzhun predict uplift",
}

#: Kinds with one active model per name rather than per kind.
_ACTIVE_PER_NAME = frozenset({"segment"})

_COLUMNS = (
    "model_id, kind, name, method, params, features, metrics, info, as_of, fit_seconds, "
    "active, created_at, artefact_bytes, path"
)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as compressed ``.npz`` bytes (no pickle: a model is data, not code)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def npz_arrays(blob: bytes, *, where: str = "model") -> dict[str, np.ndarray]:
    """The arrays of ``.npz`` bytes (objects refused: nothing is unpickled)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{where}: not a saved jingzhun model ({exc})", hint="train again"
        ) from exc


def _json(value: Any) -> str:
    return json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass(frozen=True)
class ModelRecord:
    """One trained thing, as the registry lists it (the fitted state is fetched apart)."""

    model_id: str
    kind: str
    name: str
    method: str
    params: dict[str, Any]
    features: list[str]
    metrics: dict[str, Any]
    info: dict[str, Any]
    as_of: datetime | None
    fit_seconds: float | None
    active: bool
    created_at: datetime
    artefact_bytes: int = 0
    missing_file: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ModelRecord:
        mid, kind, name, method, params, feats, metrics, info, as_of, secs, active, created = row[
            :12
        ]
        return cls(
            model_id=mid,
            kind=kind,
            name=name,
            method=method,
            params=json.loads(params),
            features=json.loads(feats),
            metrics=json.loads(metrics),
            info=json.loads(info),
            as_of=as_of,
            fit_seconds=secs,
            active=bool(active),
            created_at=created,
            artefact_bytes=int(row[12] or 0),
            missing_file=row[13],
        )

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (``full=False``: without params, metrics and info)."""
        d: dict[str, Any] = {
            "model_id": self.model_id,
            "kind": self.kind,
            "name": self.name,
            "method": self.method,
            "active": self.active,
            "as_of": None if self.as_of is None else self.as_of.isoformat(sep=" "),
            "created_at": self.created_at.isoformat(sep=" "),
            "fit_seconds": None if self.fit_seconds is None else round(self.fit_seconds, 3),
            "artefact_bytes": self.artefact_bytes,
        }
        if full:
            d |= {
                "features": self.features,
                "params": self.params,
                "metrics": self.metrics,
                "info": self.info,
            }
        return d


@dataclass
class Saving:
    """A model being saved: its id and the open transaction its outputs are written in."""

    model_id: str
    con: duckdb.DuckDBPyConnection
    record: dict[str, Any] = field(default_factory=dict)


class Registry:
    """The ``models`` table of one store.

    Parameters
    ----------
    store : Store
        The open store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def saving(
        self,
        *,
        kind: str,
        name: str,
        method: str,
        params: Mapping[str, Any] | None = None,
        features: Sequence[str] = (),
        metrics: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        as_of: datetime | None = None,
        fit_seconds: float | None = None,
        artefact: bytes | None = None,
        series: str | None = None,
    ) -> Iterator[Saving]:
        """Record a fitted model, active, and yield its id with the open transaction.

        The caller writes the model's outputs on ``saving.con`` inside the ``with`` block; the
        row, its fitted state and the outputs commit together or not at all. ``series`` names
        the id (``SERIES-N``), by default ``name``.
        """
        _check_kind(kind)
        with self.store.transaction() as con:
            model_id = self._new_id(con, series or name)
            scope: Sql
            scope, args = _scope(kind, name)
            con.execute(f"UPDATE models SET active = false WHERE active AND {scope}", args)
            con.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, true, ?, ?)",
                [
                    model_id,
                    kind,
                    name,
                    method,
                    _json(dict(params or {})),
                    _json(list(features)),
                    _json(dict(metrics or {})),
                    _json(dict(info or {})),
                    as_of,
                    fit_seconds,
                    artefact,
                    utcnow(),
                    None if artefact is None else len(artefact),
                ],
            )
            yield Saving(model_id, con)

    def save(self, **record: Any) -> str:
        """Record a fitted model with no outputs of its own (see :meth:`saving`); its id."""
        with self.saving(**record) as saved:
            return saved.model_id

    @staticmethod
    def _new_id(con: duckdb.DuckDBPyConnection, series: str) -> str:
        """``SERIES-N``, N one more than the series' models so far, skipping ids taken by any
        kind (a segment run may be named like a recommender)."""
        n = con.execute(
            "SELECT count(*) FROM models WHERE model_id LIKE ? ESCAPE '\\'",
            [series.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"],
        ).fetchone()[0]
        while True:
            n += 1
            model_id = f"{series}-{n}"
            if not con.execute(
                "SELECT count(*) FROM models WHERE model_id = ?", [model_id]
            ).fetchone()[0]:
                return model_id

    def activate(self, model_id: str) -> ModelRecord:
        """Make ``model_id`` the active model of its kind (of its name, for segment runs)."""
        record = self.get(model_id)
        if record.artefact_bytes == 0 and record.missing_file is not None:
            raise self._missing(record)
        scope: Sql
        scope, args = _scope(record.kind, record.name)
        with self.store.transaction() as con:
            con.execute(f"UPDATE models SET active = false WHERE active AND {scope}", args)
            con.execute("UPDATE models SET active = true WHERE model_id = ?", [model_id])
        return self.get(model_id)

    # -- reading ------------------------------------------------------------------------------

    def list(self, kind: str | None = None) -> list[ModelRecord]:
        """Every model (of one kind), newest first."""
        if kind is not None:
            _check_kind(kind)
        where: Sql
        where, args = ("WHERE kind = ?", [kind]) if kind else ("", [])
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM models {where} ORDER BY created_at DESC, model_id DESC", args
        )
        return [ModelRecord.from_row(r) for r in rows]

    def get(
        self,
        model_id: str,
        *,
        kind: str | Sequence[str] | None = None,
        what: str | None = None,
    ) -> ModelRecord:
        """The model ``model_id`` (of ``kind``, when given); an error naming the known ids
        (``what`` names the model in it, e.g. "predict model")."""
        rows = self.store.rows(f"SELECT {_COLUMNS} FROM models WHERE model_id = ?", [model_id])
        kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
        if rows and (not kinds or rows[0][1] in kinds):
            return ModelRecord.from_row(rows[0])
        if rows:
            raise self._other_kind(rows[0][1], model_id, what or _wanted(kinds), kinds)
        raise NotFoundError(
            f"no {what or _kinds_word(kinds)} {shown(model_id)}", hint=self._known(kinds)
        )

    def find(self, ref: str, *, kind: str) -> ModelRecord:
        """A model by id, or the active (else the latest) model of the name ``ref``."""
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM models WHERE kind = ? AND (model_id = ? OR name = ?) "
            "ORDER BY model_id = ? DESC, active DESC, created_at DESC, model_id DESC LIMIT 1",
            [kind, ref, ref, ref],
        )
        if not rows:
            other = self.store.rows("SELECT kind FROM models WHERE model_id = ?", [ref])
            if other:
                raise self._other_kind(other[0][0], ref, _wanted((kind,)), (kind,))
            raise NotFoundError(
                f"no {_kinds_word((kind,))} {shown(ref)}", hint=self._known((kind,))
            )
        return ModelRecord.from_row(rows[0])

    def active(self, kind: str, name: str | None = None) -> ModelRecord | None:
        """The active model of ``kind`` (of ``name`` too, when given); the newest if several."""
        _check_kind(kind)
        where: Sql
        where, args = ("AND name = ?", [name]) if name is not None else ("", [])
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM models WHERE active AND kind = ? {where} "
            "ORDER BY created_at DESC, model_id DESC LIMIT 1",
            [kind, *args],
        )
        return ModelRecord.from_row(rows[0]) if rows else None

    def artefact(self, model_id: str) -> bytes:
        """The fitted state of ``model_id`` as ``.npz`` bytes."""
        blob = self.store.scalar("SELECT artefact FROM models WHERE model_id = ?", [model_id])
        if blob is None:
            raise self._missing(self.get(model_id))
        return bytes(blob)

    def arrays(self, model_id: str) -> dict[str, np.ndarray]:
        """The fitted state of ``model_id`` as named arrays."""
        return npz_arrays(self.artefact(model_id), where=f"model {model_id}")

    def version(self) -> tuple[Any, ...]:
        """A fingerprint of which models are active: serving caches compare it to know when
        to reload (a model activated by another process included)."""
        return tuple(
            self.store.rows("SELECT kind, name, model_id FROM models WHERE active ORDER BY ALL")
        )

    # -- upgrading ----------------------------------------------------------------------------

    def absorb_files(self) -> int:
        """Read pre-006 model files (recorded by path relative to the store's folder) into
        their rows, then remove them; return how many were absorbed. A file not found (the
        store was copied without its ``.models`` folder) stays recorded by path and its model
        says so when used."""
        pending = self.store.rows(
            "SELECT model_id, path FROM models WHERE path IS NOT NULL AND artefact IS NULL"
        )
        found: list[tuple[str, Path, bytes]] = []
        for model_id, rel in pending:
            file = self.store.path.parent / rel
            if file.is_file():
                found.append((model_id, file, file.read_bytes()))
        if not found:
            return 0
        with self.store.transaction() as con:
            for model_id, _, blob in found:
                con.execute(
                    "UPDATE models SET artefact = ?, artefact_bytes = ?, path = NULL "
                    "WHERE model_id = ?",
                    [blob, len(blob), model_id],
                )
        for _, file, _ in found:
            file.unlink(missing_ok=True)
            for folder in (file.parent, file.parent.parent):
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    break
        log.info("absorbed %d model files into %s", len(found), self.store.path)
        return len(found)

    # -- messages -----------------------------------------------------------------------------

    def _known(self, kinds: Sequence[str]) -> str:
        where: Sql = f"WHERE kind IN ({', '.join('?' * len(kinds))})" if kinds else ""
        known = [
            r[0]
            for r in self.store.rows(
                f"SELECT model_id FROM models {where} ORDER BY created_at, model_id", list(kinds)
            )
        ]
        if known:
            shown = known if len(known) <= 12 else [*known[:5], "…", *known[-5:]]
            return "known: " + ", ".join(shown)
        return "train one first: " + " or ".join(KINDS[k] for k in (kinds or ("recommender",)))

    def _other_kind(
        self, found: str, model_id: str, wanted: str, kinds: Sequence[str]
    ) -> NotFoundError:
        """``model_id`` is a model, of a kind the caller cannot use."""
        what = "segment run" if found == "segment" else f"{found} model"
        return NotFoundError(
            f"{shown(model_id)} is a {what} ({KINDS.get(found, found)}), not a {wanted}",
            hint=self._known(kinds),
        )

    @staticmethod
    def _missing(record: ModelRecord) -> NotFoundError:
        return NotFoundError(
            f"model {record.model_id}: its file {record.missing_file or '(none)'} was not found "
            "when the store was upgraded to keep models inside it",
            hint=f"train it again ({KINDS.get(record.kind, 'jingzhun models list')})",
        )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(
            f"kind {shown(kind)} is not a model kind",
            hint=f"use one of: {', '.join(KINDS)}",
            param="kind",
        )


def _scope(kind: str, name: str) -> tuple[Sql, list[str]]:
    if kind in _ACTIVE_PER_NAME:
        return "kind = ? AND name = ?", [kind, name]
    return "kind = ?", [kind]


def _wanted(kinds: Sequence[str]) -> str:
    """What the caller asked for, when a model of another kind was named."""
    return "recommender" if tuple(kinds) == ("recommender",) else _kinds_word(kinds)


def _kinds_word(kinds: Sequence[str]) -> str:
    words = {"segment": "segment run", "recommender": "trained model"}
    if len(kinds) == 1:
        return words.get(kinds[0], f"{kinds[0]} model")
    return "model"
