"""The recommend stage's data from the store: interactions, one user's history, the catalog.

Interactions come from the same stitched events the profiles read (anonymous history under the
known user, events before ``as_of``), weighted per event type and halved every half-life of
age — the profile's A(u) rule, so the content model's C(u, category) is the profile's affinity.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jingzhun.errors import NotFoundError
from jingzhun.recommend.data import CATALOG_COLUMNS, Vocabulary
from jingzhun.store import Store

if TYPE_CHECKING:
    from jingzhun.config import RecommendSettings, Settings
    from jingzhun.store.lake import Lake


_EPOCH = datetime(1970, 1, 1)


def interaction_weights(settings: Settings) -> tuple[dict[str, float], float]:
    """Event weights and half-life of the interactions: ``[recommend]``'s, else the profile's,
    so that by default the content model's C(u, category) is the profile's affinity A(u)."""
    rs = settings.recommend
    return dict(
        rs.weights or settings.profile.weights
    ), rs.half_life_days or settings.profile.half_life_days


def interactions_frame(
    store: Store, settings: Settings, as_of: datetime, user_ids: list[str] | None = None
) -> pd.DataFrame:
    """(user_id, item_id, weight, purchased, last_seen) from the stitched events before
    ``as_of``, each event weighted by its type and halved every half-life of age (the
    profile's A(u) rule)."""
    # Sorted: a GROUP BY's rows come in any order, and what is built from the frame (the
    # vocabularies, a split by position) must be the same for the same store.
    expr = interactions_expr(store, settings, as_of, user_ids)
    return expr.order_by(["user_id", "item_id"]).to_pyarrow().to_pandas()


def interactions_expr(
    store: Store | Lake,
    settings: Settings,
    as_of: datetime,
    user_ids: list[str] | None = None,
    *,
    decay: bool = True,
) -> Any:
    """The Ibis expression of :func:`interactions_frame` (``decay=False``: plain sums of the
    event weights), on a store or on a lake (a batch on Spark reads the same definition)."""
    import ibis

    from jingzhun.profile.expr import seconds_between
    from jingzhun.profile.traits import stitched

    backend = store.ibis()
    at = ibis.literal(as_of)
    e = stitched(backend, at, user_ids)
    weights, half_life = interaction_weights(settings)
    e = e.filter(e.user_id.notnull() & e.item_id.notnull() & e.event.isin(list(weights)))
    w = ibis.cases(*((e.event == k, float(v)) for k, v in weights.items()), else_=0.0)
    if decay:
        # Ages to the microsecond on every engine (Spark's epoch seconds drop the fraction).
        age_days = seconds_between(at, e.ts) / 86400.0
        w = w * (ibis.literal(0.5).log() * age_days / half_life).exp()
    t = e.mutate(_w=w)
    agg = (
        t.group_by(["user_id", "item_id"])
        .aggregate(
            weight=t._w.sum(),
            purchased=(t.event == "order_completed").any(),
            last_seen=seconds_between(t.ts.max(), ibis.literal(_EPOCH)),
        )
        .filter(ibis._.weight > 0)
    )
    return agg


class HistoryQuery:
    """One user's interactions, compiled to SQL once and run with the user id and ``as_of``
    as parameters: compiling the Ibis expression costs ~80 ms, running it a few ms. (A server
    taking events moves the default ``as_of`` with every batch: were it part of the compiled
    text, every request after a batch would compile again.)"""

    _SENTINEL = "\x00jingzhun-user\x00"
    #: An ``as_of`` no store holds, compiled in and then replaced by the parameter.
    _AS_OF = datetime(1970, 1, 2, 3, 4, 5, 678901)
    _AS_OF_SQL = "MAKE_TIMESTAMP(1970, 1, 2, 3, 4, 5.678901)"

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self._sql: str | None = None

    def __call__(self, user_id: str, as_of: datetime) -> pd.DataFrame:
        if self._sql is None:
            import ibis

            expr = interactions_expr(self.store, self.settings, self._AS_OF, [self._SENTINEL])
            sql = str(ibis.to_sql(expr, dialect="duckdb"))
            quoted = "'" + self._SENTINEL + "'"
            if quoted not in sql or self._AS_OF_SQL not in sql:  # pragma: no cover
                raise RuntimeError(
                    "cannot parametrise the history query (Ibis changed how it writes literals)"
                )
            sql = sql.replace(quoted, "$user").replace(self._AS_OF_SQL, "CAST($as_of AS TIMESTAMP)")
            self._sql = sql
        return self.store.con.execute(self._sql, {"user": user_id, "as_of": as_of}).df()


def catalog(source: Store | Lake) -> pd.DataFrame:
    """The catalog (:data:`CATALOG_COLUMNS`, by item id) of a store, or of a lake for a batch
    on Spark: one Ibis expression for both."""
    items = source.ibis().table("items")
    return items.select(*CATALOG_COLUMNS).order_by("item_id").to_pyarrow().to_pandas()


def default_as_of(store: Store) -> datetime:
    from jingzhun.profile.build import default_as_of as profile_as_of

    return profile_as_of(store)


def segment_labels(
    store: Store, rs: RecommendSettings, users: Vocabulary
) -> tuple[np.ndarray | None, str | None]:
    """Each user's segment in the configured (or latest active) run; None without runs."""
    from jingzhun.segment.runs import members_of, resolve

    if not store.scalar("SELECT count(*) FROM segment_runs"):
        if rs.segment_run:
            raise NotFoundError(
                f"[recommend] segment_run {rs.segment_run!r}: no segment runs yet",
                hint="run jingzhun segment run",
            )
        return None, None
    run_id = resolve(store, rs.segment_run)["run_id"]
    members = members_of(store, run_id)
    labels = np.full(len(users), None, dtype=object)
    pos = users.index(members["user_id"].to_numpy(dtype=object))
    ok = pos >= 0
    labels[pos[ok]] = members["segment"].to_numpy(dtype=object)[ok]
    return labels, run_id


def store_log(store: Store, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's interactions as an evaluation log (user, item, rating = summed event
    weights without decay, time = last interaction) and the catalog as item features: the
    training interactions' own definition, undecayed."""
    expr = interactions_expr(store, settings, default_as_of(store), decay=False)
    log = (
        expr.select(user="user_id", item="item_id", rating="weight", time="last_seen")
        .order_by(["user", "item"])  # the split with a given seed is the same every run
        .to_pyarrow()
        .to_pandas()
    )
    return log, catalog(store)
