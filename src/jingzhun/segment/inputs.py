"""What a segment run reads — the profiles, the RFM tags, the category affinity — as Ibis
expressions, from a store (DuckDB) or a lake (Spark, ``--engine spark``).

The expressions are the one definition of each input; :class:`Inputs` runs them on the engine
the run was asked on and hands back pandas frames for the fit and the portraits (which run in
NumPy and pandas on one machine, on either engine). On DuckDB a frame is read through the
store's own connection, as the stage always read it, so its results do not change.

Examples
--------
>>> inputs = Inputs.of_store(store)                                     # doctest: +SKIP
>>> inputs.frame(rfm_members(inputs.table("profiles"), inputs.table("tags"))).head(1)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pandas as pd

from jingzhun.errors import InputError, NotFoundError
from jingzhun.segment import features as F
from jingzhun.store import engines

if TYPE_CHECKING:
    from jingzhun.store import Store
    from jingzhun.store.lake import Lake

#: The segment of a profiled user without RFM tags (no order yet) in an RFM run.
NO_ORDERS = "No orders yet"


def rfm_members(profiles: ir.Table, tags: ir.Table) -> ir.Table:
    """``user_id`` and ``segment`` of every profiled user: the ``rfm_segment`` tag's value,
    :data:`NO_ORDERS` without one; ordered by user id."""
    rfm = tags.filter(tags.tag == "rfm_segment")
    rfm = rfm.select(tagged=rfm.user_id, value=rfm.value)
    users = profiles.select("user_id")
    both = users.left_join(rfm, users.user_id == rfm.tagged)
    return both.select("user_id", segment=both.value.fill_null(NO_ORDERS)).order_by("user_id")


def revenue(profiles: ir.Table) -> ir.Table:
    """``user_id`` and ``m``, the user's revenue (0 without orders): the portraits' revenue
    share."""
    return profiles.select("user_id", m=profiles.monetary.fill_null(0))


def affinity(table: ir.Table) -> ir.Table:
    """``user_id``, ``category``, ``score``: the affinity vector A(u) in long form."""
    return table.select("user_id", "category", "score")


@dataclass
class Inputs:
    """The engine a run reads from: ``store`` (DuckDB) or ``lake`` (Spark), one of them."""

    store: Store | None = None
    lake: Lake | None = None

    @classmethod
    def of_store(cls, store: Store) -> Inputs:
        return cls(store=store)

    @classmethod
    def of_lake(cls, lake: Lake) -> Inputs:
        return cls(lake=lake)

    @property
    def where(self) -> str:
        return "the store" if self.store is not None else "the lake"

    def has(self, name: str) -> bool:
        if self.lake is not None:
            return name in self.lake.tables()
        assert self.store is not None
        return bool(self.store.columns(name))

    @property
    def backend(self) -> Any:
        """The Ibis backend the expressions run on: the lake's Spark or the store's DuckDB."""
        if self.lake is not None:
            return self.lake.ibis()
        assert self.store is not None
        return self.store.ibis()

    def table(self, name: str) -> ir.Table:
        if self.lake is not None:
            return self.lake.table(name)
        assert self.store is not None
        return self.store.ibis().table(name)

    def frame(self, expr: ir.Table) -> pd.DataFrame:
        """``expr``'s rows as a DataFrame: on DuckDB through the store's connection (as
        ``store.sql(…).df()`` always read them), on Spark as Arrow from Spark."""
        return engines.frame(self.backend, expr)

    def columns(self) -> dict[str, str]:
        """The profiles' columns and their types (DuckDB's spelling); a
        :class:`NotFoundError` when no profiles were built."""
        if self.store is not None:
            from jingzhun.profile.build import profile_columns

            return profile_columns(self.store)
        if not self.has("profiles"):
            raise NotFoundError(
                "no profiles in the lake yet",
                hint="build them with: jingzhun --engine spark --db LAKE profile build",
            )
        return F.columns_of(self.table("profiles"))

    def as_of(self) -> datetime | None:
        """The profiles' as_of (the latest, as the store's query took it)."""
        if self.store is not None:
            return self.store.scalar("SELECT max(as_of) FROM profiles")
        value = self.table("profiles").as_of.max().execute()
        if value is None or value != value:  # NULL or NaT
            return None
        return pd.Timestamp(value).tz_localize(None).to_pydatetime()

    def rfm(self) -> pd.DataFrame:
        """The RFM members (:func:`rfm_members`); an :class:`InputError` without RFM tags."""
        found = 0
        if self.has("tags"):
            tags = self.table("tags")
            found = int(tags.filter(tags.tag == "rfm_segment").count().execute())
        if not found:
            build = "jingzhun profile build"
            if self.lake is not None:
                build = "jingzhun --engine spark --db LAKE profile build"
            raise InputError(
                f"--method rfm: no RFM tags in {self.where}",
                hint=f"run {build} (with an [tags.rfm] section, on by default)",
            )
        return self.frame(rfm_members(self.table("profiles"), self.table("tags")))

    def affinity(self) -> pd.DataFrame | None:
        if not self.has("profile_affinity"):
            return None
        return self.frame(affinity(self.table("profile_affinity")))

    def revenue(self) -> pd.Series:
        return self.frame(revenue(self.table("profiles"))).set_index("user_id").m

    def features(self, names: list[str]) -> pd.DataFrame:
        """``user_id`` and the features ``names`` (:func:`jingzhun.segment.features.select`),
        one row per profiled user, by user id."""
        return self.frame(F.select(self.table("profiles"), names))


__all__ = ["NO_ORDERS", "Inputs", "affinity", "revenue", "rfm_members"]
