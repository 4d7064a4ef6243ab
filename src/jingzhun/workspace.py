"""The Workspace: one store and its settings, and every stage's operations on it.

The CLI, the server and notebooks all go through this class; it holds no state that the store
does not hold.

Examples
--------
>>> import jingzhun
>>> with jingzhun.open("shop.duckdb") as ws:                           # doctest: +SKIP
...     ws.ingest("events", ["events.parquet"]).inserted
...     ws.summary()["tables"]["events"]
...     ws.sql("select event, count(*) from events group by 1")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jingzhun.config import Settings, load_settings, resolve_db_path
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest import quarantine as q
from jingzhun.ingest.clean import CleaningReport, clean
from jingzhun.ingest.pipeline import BatchResult, Ingestor, Progress
from jingzhun.ingest.schema import KINDS
from jingzhun.ingest.validate import IngestOptions
from jingzhun.outputs import atomic_write, check_output_path
from jingzhun.store import TABLES, Store
from jingzhun.store.sql import ident

if TYPE_CHECKING:
    from jingzhun.predict.service import Scored as PredictScored
    from jingzhun.predict.service import Trained as PredictTrained
    from jingzhun.profile.analyze import Analysis
    from jingzhun.profile.build import BuildResult
    from jingzhun.recommend.service import Recommend
    from jingzhun.recommend.service import Trained as RecTrained
    from jingzhun.segment.runs import RunResult as SegmentRun
    from jingzhun.segment.runs import Segmenter


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


def _as_of(value: datetime | str | None) -> datetime | None:
    from jingzhun.profile.build import parse_as_of

    return parse_as_of(value) if isinstance(value, str) else value


class Workspace:
    """Everything jingzhun does to one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        Loaded from ``jingzhun.toml`` (or defaults).
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._ibis: Any = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        read_only: bool = False,
    ) -> Workspace:
        """Open the store at ``path`` (default ``$JINGZHUN_DB`` or ``./jingzhun.duckdb``)."""
        settings = load_settings(config)
        return cls(Store.open(resolve_db_path(path), settings, read_only=read_only), settings)

    @property
    def path(self) -> Path:
        return self.store.path

    # -- collect ------------------------------------------------------------------------------

    def ingest(
        self,
        kind: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        format: str | None = None,
        mapping: dict[str, str] | None = None,
        constants: dict[str, str] | None = None,
        event_map: dict[str, str] | None = None,
        ts_format: str | None = None,
        progress: Progress | None = None,
        stdin: BinaryIO | None = None,
    ) -> BatchResult:
        """Ingest files (``"-"`` for stdin) of ``kind`` (events, users or items) as one batch."""
        if kind not in KINDS:
            raise InputError(f"unknown kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
        options = IngestOptions(
            kind,  # type: ignore[arg-type]
            mapping=dict(mapping or {}),
            constants=dict(constants or {}),
            event_map=dict(event_map or {}),
            ts_format=ts_format,
            format=format,
        )
        return self._ingestor().ingest(
            [str(p) for p in paths], options, progress=progress, stdin=stdin
        )

    def _ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.settings.ingest)

    def quarantine_batches(self) -> pd.DataFrame:
        return q.batches(self.store)

    def quarantine_reasons(self, selection: q.Selection = q.OPEN) -> pd.DataFrame:
        return q.reasons(self.store, selection)

    def quarantine_rows(
        self, selection: q.Selection = q.OPEN, *, limit: int | None = 50
    ) -> pd.DataFrame:
        return q.rows(self.store, selection, limit=limit)

    def quarantine_export(
        self, out: str | os.PathLike[str], selection: q.Selection = q.OPEN
    ) -> int:
        return q.export(self.store, out, selection)

    def quarantine_replay(
        self,
        selection: q.Selection = q.OPEN,
        *,
        file: str | os.PathLike[str] | None = None,
        event_map: dict[str, str] | None = None,
    ) -> list[BatchResult]:
        return q.replay(self.store, self._ingestor(), selection, file=file, event_map=event_map)

    def quarantine_discard(self, selection: q.Selection) -> int:
        return q.discard(self.store, selection)

    def clean(
        self, *, flag: bool = True, remove: Sequence[str] = (), **overrides: Any
    ) -> CleaningReport:
        """The cleaning report; ``overrides`` replace ``[clean]`` settings for this run."""
        settings = self.settings.clean.model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
        return clean(self.store, settings, flag=flag, remove=tuple(remove))

    # -- profile ------------------------------------------------------------------------------

    def profile_build(self, as_of: datetime | str | None = None) -> BuildResult:
        """Build profiles, category affinity and tags as of ``as_of`` (default: now-ish: just
        after the latest event)."""
        from jingzhun.profile.build import build, parse_as_of

        when = parse_as_of(as_of) if isinstance(as_of, str) else as_of
        return build(self.store, self.settings, when)

    def profile(self, user_id: str, *, events: int = 10) -> dict[str, Any]:
        """One user's traits, tags, linked devices and latest events.

        ``user_id`` may also be an anonymous id that was linked to a user.
        """
        from jingzhun.checks import MAX_ROWS, bounded_int
        from jingzhun.profile.build import require_profiles

        events = bounded_int(events, "--events", lo=0, hi=MAX_ROWS)
        require_profiles(self.store)
        row = self.store.sql("SELECT * FROM profiles WHERE user_id = ?", [user_id]).df()
        if row.empty:
            linked = self.store.scalar(
                "SELECT user_id FROM identities WHERE anonymous_id = ?", [user_id]
            )
            if linked is None:
                raise NotFoundError(
                    f"no profile for user {user_id!r}",
                    hint="check the id, or rebuild: jingzhun profile build",
                )
            row = self.store.sql("SELECT * FROM profiles WHERE user_id = ?", [linked]).df()
            if row.empty:
                raise NotFoundError(
                    f"no profile for user {linked!r}, the owner of device {user_id!r}",
                    hint="rebuild: jingzhun profile build",
                )
            user_id = linked
        traits = {k: _plain(v) for k, v in row.iloc[0].items()}
        tags = self.store.rows(
            "SELECT tag, value, source FROM tags WHERE user_id = ? ORDER BY source, tag", [user_id]
        )
        devices = [
            r[0]
            for r in self.store.rows(
                "SELECT anonymous_id FROM identities WHERE user_id = ? ORDER BY linked_at",
                [user_id],
            )
        ]
        recent = self.store.sql(
            """
            SELECT ts, event, item_id, order_id, revenue, channel FROM events
            WHERE user_id = ? OR anonymous_id IN (SELECT anonymous_id FROM identities WHERE user_id = ?)
            ORDER BY ts DESC LIMIT ?
            """,
            [user_id, user_id, events],
        ).df()
        return {
            "user_id": user_id,
            "traits": traits,
            "tags": {t: v for t, v, _ in tags},
            "anonymous_ids": devices,
            "last_events": [
                {k: _plain(v) for k, v in r.items()} for r in recent.to_dict("records")
            ],
        }

    def profiles(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The profiles table (or some of its columns) as a DataFrame."""
        from jingzhun.profile.build import require_profiles

        require_profiles(self.store)
        cols = ", ".join(ident(c) for c in columns) if columns else "*"
        return self.sql(f"SELECT {cols} FROM profiles ORDER BY user_id")

    def profile_export(self, out: str | os.PathLike[str]) -> int:
        """Write the profiles to Parquet or CSV (by the file's extension); return the rows."""
        from jingzhun.profile.build import profile_columns

        kinds = profile_columns(self.store)
        path = Path(out)
        # CSV has no lists or maps: those columns are written as JSON text.
        select = "*"
        if path.suffix.lower() == ".csv":
            select = ", ".join(
                f'to_json("{c}")::VARCHAR AS "{c}"'
                if ("[]" in t or t.startswith("MAP"))
                else f'"{c}"'
                for c, t in kinds.items()
            )
        return self._copy_out(f"SELECT {select} FROM profiles ORDER BY user_id", path)

    def _copy_out(self, query: str, path: Path) -> int:
        """COPY a query to Parquet or CSV (by extension), atomically; return the rows."""
        target = check_output_path(path, store_path=self.path, create_parents=True)
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".csv"):
            raise InputError(
                f"--out {path}: unknown extension {suffix or '(none)'}", hint="use .parquet or .csv"
            )
        rows = 0
        # Streamed out as Arrow batches and written here: the store's connection may not
        # open files (store.store._seal), so no COPY ... TO.
        self.store.sql("SELECT 1").fetchall()  # finish any half-read result first
        reader = self.store.con.sql(query).to_arrow_reader(1 << 16)
        with atomic_write(target) as fh:
            writer: Any
            if suffix == ".parquet":
                writer = pq.ParquetWriter(fh, reader.schema)
            else:
                writer = pacsv.CSVWriter(fh, reader.schema)
            with writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        return rows

    def tags(self) -> pd.DataFrame:
        """Every tag with its values and how many users carry each."""
        return self.sql(
            "SELECT tag, value, source, count(*) AS users, max(computed_at) AS computed_at FROM tags GROUP BY ALL ORDER BY source, tag, users DESC"
        )

    def analyze(self, name: str, **options: Any) -> Analysis:
        """Run a behaviour analysis: trends, funnel, cohorts, baskets or frequency."""
        from jingzhun.profile.analyze import run

        return run(self.store, name, **options)

    # -- segment ------------------------------------------------------------------------------

    def segment_run(self, method: str = "kmeans", **options: Any) -> SegmentRun:
        """Segment the profiles with ``method`` (rfm, kmeans, minibatch-kmeans, hierarchical,
        dbscan, hdbscan, gmm, som); the run becomes the active run of its name.

        Options: ``k`` ("auto" or a number), ``features`` (trait names), ``name``, ``pca``,
        ``k_range`` ((min, max) for auto), ``random_state``, ``stability_resamples``, and the
        method's own (``eps``, ``min_samples``, ``min_cluster_size``, ``grid``) in ``options``.
        """
        from jingzhun.segment.runs import run

        return run(self.store, method=method, **options)

    def segment_runs(self) -> pd.DataFrame:
        """Every segment run, newest first, with its headline metrics."""
        from jingzhun.segment.runs import list_runs

        return list_runs(self.store)

    def segment(self, ref: str | None = None) -> dict[str, Any]:
        """A run (by run id or name; default the latest active) with its segment portraits."""
        from jingzhun.segment.runs import portraits_of, resolve

        info = resolve(self.store, ref)
        return info | {"portraits": portraits_of(self.store, info["run_id"])}

    def segment_members(self, ref: str | None = None) -> pd.DataFrame:
        """user_id, segment, label, fitted, assigned_at of a run."""
        from jingzhun.segment.runs import members_of, resolve

        return members_of(self.store, resolve(self.store, ref)["run_id"])

    def segment_export(self, out: str | os.PathLike[str], ref: str | None = None) -> int:
        """Write a run's members to Parquet or CSV (by extension); return the rows."""
        from jingzhun.segment.runs import resolve

        run_id = resolve(self.store, ref)["run_id"]
        query = (
            "SELECT m.user_id, m.segment, p.label, m.fitted FROM segment_members m "
            "LEFT JOIN segment_portraits p USING (run_id, segment) "
            f"WHERE m.run_id = '{run_id.replace(chr(39), chr(39) * 2)}' ORDER BY m.user_id"
        )
        return self._copy_out(query, Path(out))

    def segment_assign(self, ref: str | None = None) -> dict[str, Any]:
        """Place profiled users who are not yet in the run into its segments (no refit)."""
        from jingzhun.segment.runs import assign_new

        return assign_new(self.store, ref)

    def segmenter(self, ref: str | None = None) -> Segmenter:
        """The run's model in memory: ``.assign(traits)`` places one user in microseconds."""
        from jingzhun.segment.runs import Segmenter

        return Segmenter(self.store, ref)

    # -- recommend ----------------------------------------------------------------------------

    def recommend_train(self, model: str | None = None, **params: Any) -> RecTrained:
        """Fit a recommender (default ``[recommend] model``, "hybrid") on the store's
        interactions; the model is saved in the store's folder and becomes the active one."""
        from jingzhun.recommend.service import train

        return train(self.store, self.settings, model, params)

    def recommend_models(self) -> pd.DataFrame:
        """Every trained model version, newest first."""
        from jingzhun.recommend.service import list_models

        return list_models(self.store)

    def recommend_evaluate(
        self,
        log: pd.DataFrame | None = None,
        *,
        item_features: pd.DataFrame | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Compare models offline (``evaluate`` options: ``split_spec``, ``models``, ``k``,
        ``seed``, ``min_rating``, ``budget``). Without ``log``, the store's interactions and
        catalog are evaluated and the result is kept in ``recommend_evaluations``."""
        from jingzhun.recommend.evaluate import evaluate
        from jingzhun.recommend.service import save_evaluation, store_log

        source = "store" if log is None else "log"
        if log is None:
            log, item_features = store_log(self.store, self.settings)
        result = evaluate(log, item_features=item_features, **options).to_json()
        if source == "store" and not self.store.read_only:
            save_evaluation(self.store, source, result)
        return result

    def recommender(self, model: str | None = None, **rules: Any) -> Recommend:
        """The active (or a named) model in memory, with the catalog, rules and segments:
        ``.for_user(id)``, ``.session(items)``, ``.batch(k)``. ``rules`` override
        ``[recommend]`` rule settings (``max_per_category``, ``price_max`` …)."""
        from jingzhun.recommend.service import Recommend

        return Recommend(self.store, self.settings, model, **rules)

    def recommend(
        self, user_id: str, k: int = 10, *, model: str | None = None, lang: str = "en"
    ) -> dict[str, Any]:
        """Top ``k`` for one user with explanations; an unknown user takes the cold-start path."""
        return self.recommender(model).for_user(user_id, k, lang=lang)

    def recommend_batch(
        self, k: int | None = None, *, model: str | None = None, progress: Any = None
    ) -> int:
        """Write top ``k`` for every user to ``recommendations``; return the rows."""
        return self.recommender(model).batch(
            self.settings.recommend.k if k is None else k, progress=progress
        )

    def recommend_session(
        self, item_ids: Sequence[str], k: int = 10, *, model: str | None = None
    ) -> pd.DataFrame:
        """Real-time recommendations after the items of the current session."""
        return self.recommender(model).session(list(item_ids), k)

    # -- predict ------------------------------------------------------------------------------

    def predict_train(
        self,
        target: str = "propensity",
        *,
        horizon_days: float | None = None,
        as_of: datetime | str | None = None,
        models: Sequence[str] | None = None,
        train_windows: int | None = None,
        progress: Any = None,
    ) -> PredictTrained:
        """Compare the classifiers for ``target`` ("propensity" or "churn") on a time-based
        split of point-in-time profiles; the best on validation, calibrated, becomes active."""
        from jingzhun.predict.service import train

        return train(
            self.store,
            self.settings,
            target,
            horizon_days=horizon_days,
            as_of=_as_of(as_of),
            models=list(models) if models else None,
            train_windows=train_windows,
            progress=progress,
        )

    def predict_score(
        self,
        target: str = "propensity",
        *,
        model: str | None = None,
        as_of: datetime | str | None = None,
    ) -> PredictScored:
        """Score every user with the active (or named) model: ``scores`` and the
        ``likely_to_buy`` / ``churn_risk`` tags are replaced."""
        from jingzhun.predict.service import score

        return score(self.store, self.settings, target, model_id=model, as_of=_as_of(as_of))

    def predict_clv(
        self, *, model: str = "bgnbd", unit: str = "week", as_of: datetime | str | None = None
    ) -> dict[str, Any]:
        """Fit BG/NBD (or Pareto/NBD) and Gamma-Gamma to the store's orders; write the
        ``clv``, ``expected_orders`` and ``p_alive`` scores."""
        from jingzhun.predict.service import clv_score

        return clv_score(self.store, self.settings, as_of=_as_of(as_of), model=model, unit=unit)

    def predict_uplift(self, assignments: pd.DataFrame, **options: Any) -> dict[str, Any]:
        """Fit uplift models on a past randomized campaign (user_id, group[, sent_at]); see
        ``jingzhun.predict.uplift_service.train``."""
        from jingzhun.predict.uplift_service import train

        return train(self.store, self.settings, assignments, **options)

    def predict_models(self) -> pd.DataFrame:
        """Every trained predict model, newest first."""
        from jingzhun.predict.service import list_models

        return list_models(self.store)

    def predict_report(self) -> dict[str, Any]:
        """The active models' comparisons and the score distributions."""
        from jingzhun.predict.service import report

        return report(self.store)

    def scores(self, kind: str | None = None) -> pd.DataFrame:
        """The latest scores (one kind, or all)."""
        where = "" if kind is None else "WHERE score = ?"
        return self.sql(
            f"SELECT * FROM scores {where} ORDER BY score, value DESC",
            None if kind is None else [kind],
        )

    # -- look ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Row counts, the time span of events, events by type, identity and quarantine status."""
        con = self.store.con
        counts = {t: self.store.count(t) for t in TABLES}
        first, last, stitched_users, anon_events, stitched_events = con.execute(
            """
            SELECT min(e.ts), max(e.ts),
                   (SELECT count(DISTINCT user_id) FROM identities),
                   count(*) FILTER (WHERE e.user_id IS NULL),
                   count(*) FILTER (WHERE e.user_id IS NULL AND i.user_id IS NOT NULL)
            FROM events e LEFT JOIN identities i ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id
            """
        ).fetchone()
        by_event = dict(
            con.execute("SELECT event, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall()
        )
        open_q = con.execute(
            "SELECT count(*) FROM quarantine WHERE resolved_at IS NULL"
        ).fetchone()[0]
        return {
            "store": str(self.path),
            "schema_version": self.store.schema_version(),
            "tables": counts,
            "events_from": first.isoformat(sep=" ") if first else None,
            "events_to": last.isoformat(sep=" ") if last else None,
            "events_by_type": {k: int(v) for k, v in by_event.items()},
            "known_users_with_anonymous_history": int(stitched_users or 0),
            "anonymous_events": int(anon_events or 0),
            "anonymous_events_stitched": int(stitched_events or 0),
            "quarantine_open": int(open_q),
        }

    def sql(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL on the store and return a DataFrame."""
        return self.store.sql(query, params).df()

    @property
    def ibis(self) -> Any:
        """An Ibis DuckDB backend over this store's connection (for ``ws.ibis.table("events")``)."""
        if self._ibis is None:
            import ibis

            self._ibis = ibis.duckdb.from_connection(self.store.con)
        return self._ibis

    # -- report -------------------------------------------------------------------------------

    def report(
        self, out: str | os.PathLike[str], *, lang: str = "en", title: str | None = None
    ) -> Path:
        """Write the HTML report of everything in the store to ``out``."""
        from jingzhun.report import build_report

        return build_report(self, Path(out), lang=lang, title=title)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"
