"""The Workspace: one store and its settings, with one typed facade per stage.

The CLI, the server and notebooks all go through it; it holds no state that the store does not
hold (serving caches aside, which check the store on every call).

=================  ====================================================================
``ws.ingest``      files in, quarantine, cleaning, the store's summary
``ws.profiles``    build, one user's 360° view, tags, behaviour analyses
``ws.segments``    runs, portraits, members, assignment, a user's segments
``ws.recs``        train, evaluate, serve (user, session, batch), a user's latest list
``ws.predict``     propensity/churn, CLV, uplift, scores, a user's scores
``ws.models``      the registry of every trained model: list, show, activate
``ws.campaigns``   create, preview and send campaigns; their members and deliveries
``ws.evaluate``    campaign reports: lift over control with intervals, CUPED, SRM, ROI
``ws.privacy``     find, export and erase a person; the audit log; the vault's keys
=================  ====================================================================

Examples
--------
>>> import jingzhun
>>> with jingzhun.open("shop.duckdb") as ws:                           # doctest: +SKIP
...     ws.ingest.files("events", ["events.parquet"]).inserted
...     ws.profiles.build()
...     ws.segments.run("kmeans", name="value").segments
...     ws.recs.for_user("u123", k=5).items
...     ws.models.list("recommender")

The methods named after the CLI commands (``ws.segment_run(...)``, ``ws.recommend_train(...)``
…) are the 0.x spelling, kept as thin aliases of the facades for this release.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jingzhun.config import Settings, load_settings, resolve_db_path
from jingzhun.store import Registry, Store

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.campaign.facade import Campaigns
    from jingzhun.evaluate.facade import Evaluate
    from jingzhun.ingest import quarantine as q
    from jingzhun.ingest.clean import CleaningReport
    from jingzhun.ingest.facade import Ingest
    from jingzhun.ingest.pipeline import BatchResult
    from jingzhun.predict.classify import Trained as PredictTrained
    from jingzhun.predict.facade import Predict
    from jingzhun.predict.scores import Scored as PredictScored
    from jingzhun.privacy.facade import Privacy
    from jingzhun.profile.analyze import Analysis
    from jingzhun.profile.build import BuildResult
    from jingzhun.profile.facade import Profiles
    from jingzhun.recommend.facade import Recs
    from jingzhun.recommend.serving import Recommend
    from jingzhun.recommend.training import Trained as RecTrained
    from jingzhun.segment.facade import Segments
    from jingzhun.segment.runs import RunResult as SegmentRun
    from jingzhun.segment.runs import Segmenter


class _Facade:
    """A stage's facade, made on first use: its stage's modules (pandas, Ibis, SciPy,
    scikit-learn …) are imported then, not by every command (``jingzhun --help`` took 1.5 s
    importing them all). Made anew after the settings change."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.cls = module, name

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, ws: Workspace | None, owner: type) -> Any:
        if ws is None:
            return self
        cls = getattr(importlib.import_module(self.module), self.cls)
        made = ws.__dict__[self.attr] = cls(ws.store, ws.settings)
        return made


class Workspace:
    """Everything jingzhun does to one store: one facade per stage.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        Loaded from ``jingzhun.toml`` (or defaults).
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.models = Registry(store)
        self.settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings reach every stage: the facades are made anew over them."""
        self._settings = settings
        for attr in _FACADES:
            self.__dict__.pop(attr, None)

    if TYPE_CHECKING:
        ingest: Ingest
        profiles: Profiles
        segments: Segments
        recs: Recs
        predict: Predict
        campaigns: Campaigns
        evaluate: Evaluate
        privacy: Privacy
    else:
        ingest = _Facade("jingzhun.ingest.facade", "Ingest")
        profiles = _Facade("jingzhun.profile.facade", "Profiles")
        segments = _Facade("jingzhun.segment.facade", "Segments")
        recs = _Facade("jingzhun.recommend.facade", "Recs")
        predict = _Facade("jingzhun.predict.facade", "Predict")
        campaigns = _Facade("jingzhun.campaign.facade", "Campaigns")
        evaluate = _Facade("jingzhun.evaluate.facade", "Evaluate")
        privacy = _Facade("jingzhun.privacy.facade", "Privacy")

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

    def sql(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL on the store and return a DataFrame (for notebooks; stages have their own
        read functions)."""
        return self.store.sql(query, params).df()

    @property
    def ibis(self) -> Any:
        """An Ibis DuckDB backend over this store's connection (``ws.ibis.table("events")``)."""
        return self.store.ibis()

    def summary(self) -> dict[str, Any]:
        """Row counts, the time span of events, events by type, identity and quarantine status."""
        return self.ingest.summary().to_dict()

    def report(
        self, out: str | os.PathLike[str], *, lang: str = "en", title: str | None = None
    ) -> Path:
        """Write the HTML report of everything in the store to ``out``."""
        from jingzhun.report import build_report

        return build_report(self, Path(out), lang=lang, title=title)

    # -- the 0.x spelling: thin aliases of the facades ----------------------------------------

    def quarantine_batches(self) -> pd.DataFrame:
        return self.ingest.quarantine.batches()

    def quarantine_reasons(self, selection: q.Selection | None = None) -> pd.DataFrame:
        return self.ingest.quarantine.reasons(*_given(selection))

    def quarantine_rows(
        self, selection: q.Selection | None = None, *, limit: int | None = 50
    ) -> pd.DataFrame:
        return self.ingest.quarantine.rows(*_given(selection), limit=limit)

    def quarantine_export(
        self, out: str | os.PathLike[str], selection: q.Selection | None = None
    ) -> int:
        return self.ingest.quarantine.export(out, *_given(selection))

    def quarantine_replay(
        self,
        selection: q.Selection | None = None,
        *,
        file: str | os.PathLike[str] | None = None,
        event_map: dict[str, str] | None = None,
    ) -> list[BatchResult]:
        return self.ingest.quarantine.replay(*_given(selection), file=file, event_map=event_map)

    def quarantine_discard(self, selection: q.Selection) -> int:
        return self.ingest.quarantine.discard(selection)

    def clean(
        self, *, flag: bool = True, remove: Sequence[str] = (), **overrides: Any
    ) -> CleaningReport:
        return self.ingest.clean(flag=flag, remove=remove, **overrides)

    def profile_build(self, as_of: datetime | str | None = None) -> BuildResult:
        return self.profiles.build(as_of)

    def profile(self, user_id: str, *, events: int = 10) -> dict[str, Any]:
        return dataclasses.asdict(self.profiles.user(user_id, events=events))

    def profile_export(self, out: str | os.PathLike[str]) -> int:
        return self.profiles.export(out)

    def tags(self) -> pd.DataFrame:
        return self.profiles.tags()

    def analyze(self, name: str, **options: Any) -> Analysis:
        from jingzhun.errors import InputError
        from jingzhun.profile.analyze import ANALYSES

        if name not in ANALYSES:
            raise InputError(
                f"unknown analysis {name!r}", hint=f"use one of: {', '.join(ANALYSES)}"
            )
        return getattr(self.profiles, name)(**options)

    def segment_run(self, method: str = "kmeans", **options: Any) -> SegmentRun:
        extra = options.pop("options", None) or {}
        return self.segments.run(method, **options, **extra)

    def segment_runs(self) -> pd.DataFrame:
        return self.segments.list()

    def segment(self, ref: str | None = None) -> dict[str, Any]:
        return dataclasses.asdict(self.segments.get(ref))

    def segment_members(self, ref: str | None = None) -> pd.DataFrame:
        return self.segments.members(ref)

    def segment_export(self, out: str | os.PathLike[str], ref: str | None = None) -> int:
        return self.segments.export(out, ref)

    def segment_assign(self, ref: str | None = None) -> dict[str, Any]:
        return dataclasses.asdict(self.segments.assign(ref))

    def segmenter(self, ref: str | None = None) -> Segmenter:
        return self.segments.segmenter(ref)

    def recommend_train(self, model: str | None = None, **params: Any) -> RecTrained:
        return self.recs.train(model, params=params)

    def recommend_models(self) -> pd.DataFrame:
        return self.recs.models()

    def recommend_evaluate(
        self,
        log: pd.DataFrame | None = None,
        *,
        item_features: pd.DataFrame | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        return self.recs.evaluate(log, item_features=item_features, **options).to_json()

    def recommender(self, model: str | None = None, **rules: Any) -> Recommend:
        from jingzhun.recommend.facade import RuleOverrides

        return self.recs.recommender(model, RuleOverrides(**rules) if rules else None)

    def recommend(
        self, user_id: str, k: int = 10, *, model: str | None = None, lang: str = "en"
    ) -> dict[str, Any]:
        return dataclasses.asdict(self.recs.for_user(user_id, k, model=model, lang=lang))

    def recommend_batch(
        self, k: int | None = None, *, model: str | None = None, progress: Any = None
    ) -> int:
        return self.recs.batch(k, model=model, progress=progress)

    def recommend_session(
        self, item_ids: Sequence[str], k: int = 10, *, model: str | None = None
    ) -> pd.DataFrame:
        return self.recs.session(item_ids, k, model=model)

    def predict_train(self, target: str = "propensity", **options: Any) -> PredictTrained:
        return self.predict.train(target, **options)

    def predict_score(self, target: str = "propensity", **options: Any) -> PredictScored:
        return self.predict.score(target, **options)

    def predict_clv(self, **options: Any) -> dict[str, Any]:
        return dataclasses.asdict(self.predict.clv(**options))

    def predict_uplift(self, assignments: pd.DataFrame, **options: Any) -> dict[str, Any]:
        result = dataclasses.asdict(self.predict.uplift(assignments, **options))
        return result | result.pop("extra")

    def predict_models(self) -> pd.DataFrame:
        return self.predict.models()

    def predict_report(self) -> dict[str, Any]:
        return dataclasses.asdict(self.predict.report())

    def scores(self, kind: str | None = None) -> pd.DataFrame:
        return self.predict.scores(kind)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"


_FACADES = tuple(n for n, v in vars(Workspace).items() if isinstance(v, _Facade))


def _given(selection: q.Selection | None) -> tuple[q.Selection, ...]:
    """A quarantine selection, or none (the facade's default: the open rows)."""
    return () if selection is None else (selection,)
