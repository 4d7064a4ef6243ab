"""``ws.profiles``: the profile stage's facade — build, one user's 360° view, tags, analyses.

Examples
--------
>>> ws.profiles.build()                                              # doctest: +SKIP
>>> ws.profiles.user("u123").tags                                    # doctest: +SKIP
>>> ws.profiles.funnel(within_days=7).summary                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jingzhun.contracts.results import Result
from jingzhun.contracts.time import parse_as_of
from jingzhun.errors import InputError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.config import Settings
    from jingzhun.profile.activity import Activity
    from jingzhun.profile.analyze import Analysis
    from jingzhun.profile.build import BuildResult
    from jingzhun.profile.desensitized import Exported
    from jingzhun.store import Store


@dataclass
class UserProfile(Result):
    """One user: traits, tags, linked devices, latest events and consents in force."""

    user_id: str
    traits: dict[str, Any]
    tags: dict[str, str]
    anonymous_ids: list[str] = field(default_factory=list)
    last_events: list[dict[str, Any]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)


def as_of_value(value: datetime | str | None) -> datetime | None:
    """``as_of`` given as a datetime or ISO text (naive UTC either way)."""
    return parse_as_of(value) if isinstance(value, str) else value


class Profiles:
    """The profile stage on one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        ``[profile]`` (weights, half-life, custom traits, tags) is used.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings

    def build(self, as_of: datetime | str | None = None) -> BuildResult:
        """Build profiles, category affinity and tags as of ``as_of`` (default: just after
        the latest event)."""
        from jingzhun.profile.build import build

        return build(self._store, self._settings, as_of_value(as_of))

    def user(self, user_id: str, *, events: int = 10) -> UserProfile:
        """One user's traits, tags, linked devices and latest ``events`` events; ``user_id``
        may also be an anonymous id linked to a user."""
        from jingzhun.profile.read import user_profile
        from jingzhun.store.desensitize import user_key

        return UserProfile(
            **user_profile(self._store, user_key(self._store, user_id), events=events)
        )

    def search(self, prefix: str = "", *, limit: int = 20, by: str = "user_id") -> pd.DataFrame:
        """Profiled users whose id starts with ``prefix`` (``by``: ``"user_id"`` or
        ``"monetary"``, the biggest spenders first), with their orders, spend, last visit and
        RFM segment: :func:`jingzhun.profile.read.find_users`."""
        from jingzhun.profile.read import find_users

        return find_users(self._store, prefix, limit=limit, by=by)

    def user_activity(self, user_id: str) -> pd.DataFrame:
        """One user's events per week and event (``week``, ``event``, ``n``), their devices'
        included: :func:`jingzhun.profile.read.user_activity`."""
        from jingzhun.profile.read import user_activity
        from jingzhun.store.desensitize import user_key

        return user_activity(self._store, user_key(self._store, user_id))

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The profiles table (or some of its columns), one row per user."""
        from jingzhun.profile.read import profiles_frame

        return profiles_frame(self._store, columns)

    __call__ = frame  # ws.profiles() is the profiles table, as it always was

    def export(self, out: str | os.PathLike[str]) -> int:
        """Write the profiles to Parquet or CSV (by the file's extension); the rows written."""
        from jingzhun.profile.read import export_profiles

        return export_profiles(self._store, out)

    def export_desensitized(self, out: str | os.PathLike[str], *, k: int | None = None) -> Exported:
        """Write the profiles desensitized: user ids as keyed pseudonyms, times as months,
        age band, gender and region instead of birth year and city; ``k``-anonymous over
        those when ``k`` is given (:mod:`jingzhun.profile.desensitized`)."""
        from jingzhun.profile.desensitized import export

        return export(self._store, out, k=k)

    def aggregate(
        self,
        by: Sequence[str],
        out: str | os.PathLike[str] | None = None,
        *,
        k: int | None = None,
        epsilon: float | None = None,
    ) -> tuple[pd.DataFrame, Exported]:
        """Users per group of ``by``; groups under ``k`` suppressed; counts with Laplace noise
        of scale 1/``epsilon`` when given."""
        from jingzhun.profile.desensitized import aggregate

        return aggregate(self._store, list(by), out, k=k, epsilon=epsilon)

    def tags(self) -> pd.DataFrame:
        """Every tag with its values and how many users carry each."""
        from jingzhun.profile.read import tag_counts

        return tag_counts(self._store)

    # -- behaviour analyses: one typed method each --------------------------------------------

    def trends(
        self, *, since: datetime | None = None, until: datetime | None = None, weeks: int = 12
    ) -> Analysis:
        """Daily and weekly activity, orders and revenue with their trend over ``weeks``."""
        from jingzhun.profile.analyze import trends

        return trends(self._store, since=since, until=until, weeks=weeks)

    def overview(self, days: int = 30, *, end: datetime | None = None) -> Activity:
        """The dashboard overview's figures for the ``days`` calendar days up to ``end``
        (default: just after the latest event) and the period before: daily activity, the
        funnel and cohort retention, read from what the last profile build kept
        (:mod:`jingzhun.profile.activity`) plus the days since, computed now."""
        from jingzhun.profile.activity import PERIODS, overview

        if days not in PERIODS:
            raise InputError(
                f"days={days!r}: the overview covers {', '.join(map(str, PERIODS))} days"
            )
        if end is None:
            latest = self._store.scalar("SELECT max(ts) FROM events")
            if latest is None:
                raise NotFoundError("the store has no events yet", hint="ingest events first")
            end = latest + timedelta(microseconds=1)
        return overview(self._store, days, end)

    def funnel(
        self,
        steps: Sequence[str] | None = None,
        *,
        within_days: float | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Analysis:
        """How many visitors reach each step, in order (default: view, cart, checkout, order)."""
        from jingzhun.profile.analyze import DEFAULT_FUNNEL, funnel

        chosen = DEFAULT_FUNNEL if steps is None else tuple(steps)
        return funnel(self._store, chosen, within_days=within_days, since=since, until=until)

    def cohorts(
        self, *, months: int = 12, since: datetime | None = None, until: datetime | None = None
    ) -> Analysis:
        """Monthly retention of customers by the month of their first order."""
        from jingzhun.profile.analyze import cohorts

        return cohorts(self._store, months=months, since=since, until=until)

    def baskets(
        self,
        *,
        level: str = "category",
        min_support: float = 0.001,
        min_confidence: float = 0.05,
        top: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Analysis:
        """Pairs bought together (support, confidence, lift) by category, brand or item."""
        from jingzhun.profile.analyze import baskets

        return baskets(
            self._store,
            level=level,
            min_support=min_support,
            min_confidence=min_confidence,
            top=top,
            since=since,
            until=until,
        )

    def frequency(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Analysis:
        """Customers by their number of orders, and the days between orders."""
        from jingzhun.profile.analyze import frequency

        return frequency(self._store, since=since, until=until)
