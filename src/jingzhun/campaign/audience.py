"""Drawing a campaign's audience: conditions, exclusions, ranking, then the randomized arms.

Everything happens in one temporary table (``_jz_audience``) with set-based SQL, so a million
users take seconds: the conditions of ``[audience]`` (a segment, tags, a trait expression
compiled through the profile stage's expression language — never pasted into SQL) select the
*matched* users; the exclusions of ``[exclude]`` mark users ``excluded`` with a reason, one
step at a time so a preview can say how many each step removed; ``top`` or ``share`` then
keeps part of the eligible users; and :mod:`jingzhun.campaign.assign` draws each member's arm
and variant.

The campaign's clock (``now``) defaults to the newest stored event: on a live store that is
the present, on a simulated or historical one it is that data's present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import pandas as pd

from jingzhun.campaign.assign import pick_sql, unit_sql
from jingzhun.campaign.spec import CampaignSpec
from jingzhun.contracts.results import Result
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest import consent
from jingzhun.ingest.read import buyers, contacts_index_query, latest_event_time, triggered
from jingzhun.predict.read import scored
from jingzhun.profile import expr as ex
from jingzhun.profile.read import tagged
from jingzhun.profile.tags import condition
from jingzhun.profile.traits import stitched
from jingzhun.segment.inputs import Inputs
from jingzhun.segment.read import members
from jingzhun.store import Store, engines
from jingzhun.store.lake_frames import latest_as_of
from jingzhun.store.sql import Sql

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from jingzhun.store.lake import Lake

#: The temporary table a draw leaves on the store's connection (one draw at a time).
AUDIENCE = "_jz_audience"


@dataclasses.dataclass
class Step(Result):
    """One exclusion: how many users it removed and how many remained."""

    step: str
    removed: int
    remaining: int


@dataclasses.dataclass
class Draw(Result):
    """What a draw found: sizes after each step and the arms' sizes."""

    campaign: str
    now: datetime
    matched: int
    steps: list[Step]
    members: int
    treatment: int
    control: int
    by_segment: list[dict[str, Any]]
    by_variant: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["steps"] = [s.to_dict() for s in self.steps]
        return out


def campaign_now(store: Store, now: datetime | None, lake: Lake | None = None) -> datetime:
    """The campaign's clock: ``now`` if given, else just after the newest event (of the lake,
    when the audience is drawn from one)."""
    if now is not None:
        return now
    if lake is not None:
        return latest_as_of(lake)
    latest = latest_event_time(store)
    if latest is None:
        raise InputError("the store has no events", hint="ingest events before a campaign")
    return latest + timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where a member's context is read: relations on the store's connection. By default the
    store's own tables; a campaign drawn from a lake (``--engine spark``) reads the lake's
    rows of its members, handed to the connection as Arrow
    (:meth:`Conditions.sources`). ``now``: the campaign's clock
    (default the store's)."""

    profiles: str = "profiles"
    recommendations: str = "recommendations"
    items: str = "items"
    events: str = "stitched_events"
    now: datetime | None = None


#: The store's own tables (what a campaign drawn from the store reads).
STORE_SOURCES = Sources()


class Conditions:
    """Where the audience's conditions run: the profiles, segments, tags, consents, orders
    and scores they read are Ibis expressions (one definition each, at the stage that owns
    the table) over the store's DuckDB — or over a lake's Spark (``--engine spark``), while
    the campaign's own tables (specs, members, deliveries, suppressions, the vault) stay in
    the store. :meth:`sql` turns a condition into a query the store's connection reads: on
    DuckDB the compiled SQL; on a lake the rows Spark computes, restricted to the users the
    audience matched, handed to the connection as Arrow (``_jz_lake_N``)."""

    def __init__(self, store: Store, lake: Lake | None = None) -> None:
        self.store = store
        self.lake = lake
        self.inputs = Inputs.of_lake(lake) if lake is not None else Inputs.of_store(store)
        self.backend = self.inputs.backend
        self._matched: ir.Table | None = None
        self._views: list[str] = []

    def sql(self, expr: ir.Table) -> Sql:
        if self.lake is None:
            return Sql(ibis.to_sql(expr, dialect="duckdb"))
        if self._matched is not None and "user_id" in expr.columns:
            expr = expr.semi_join(self._matched, "user_id")
        return Sql(f"SELECT * FROM {self.register(expr)}")

    def matched(self, expr: ir.Table) -> Sql:
        """The matched users' query; on a lake the later conditions keep to them (cached)."""
        if self.lake is not None:
            self._matched = expr.cache()
        return self.sql(expr)

    def sources(
        self, user_ids: Callable[[], list[str]], spec: CampaignSpec, now: datetime
    ) -> Sources:
        """Where the contexts of the users ``user_ids()`` gives are read (:class:`Sources`):
        the store's tables (the ids are not read: a million-member draft's are not needed);
        on a lake, the lake's profiles, lists, catalog and (for a triggered campaign) trigger
        events of those users, computed by Spark once for all of them and handed to the
        store's connection."""
        if self.lake is None:
            return Sources(now=now)
        b = self.backend
        have = engines.tables(b)
        ids = ibis.memtable(pd.DataFrame({"user_id": pd.Series(user_ids(), dtype=object)}))

        def mine(table: ir.Table) -> ir.Table:
            return table.semi_join(ids, table.user_id == ids.user_id)

        def empty_like(store_table: str) -> Sql:
            return Sql(f"SELECT * FROM {store_table} LIMIT 0")  # the store's columns, no rows

        profiles = self.register(mine(b.table("profiles")))
        items = self.register(b.table("items")) if "items" in have else "items"
        if "recommendations" in have:
            lists = self.register(mine(b.table("recommendations")))
        else:  # the lake has not been scored: no member has a list
            lists = self.register_query(empty_like("recommendations"))
        events = "stitched_events"
        if spec.trigger is not None:
            start = now - timedelta(hours=spec.trigger.lookback_hours)
            e = stitched(b, ibis.literal(now))
            events = self.register(
                mine(e.filter((e.event == spec.trigger.event) & (e.ts >= start)))
            )
        return Sources(profiles, lists, items, events, now)

    def register(self, expr: ir.Table) -> str:
        """``expr`` computed where the conditions run, as a relation on the store's
        connection (its name)."""
        name = f"_jz_lake_{len(self._views)}"
        self.store.con.register(name, engines.arrow(self.backend, expr))
        self._views.append(name)
        return name

    def register_query(self, sql: Sql) -> str:
        name = f"_jz_lake_{len(self._views)}"
        self.store.con.register(name, self.store.sql(sql).to_arrow_table())
        self._views.append(name)
        return name

    def __enter__(self) -> Conditions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in self._views:
            self.store.con.unregister(name)
        self._views.clear()
        if self._matched is not None:
            self._matched.release()
            self._matched = None


def draw(
    store: Store,
    spec: CampaignSpec,
    *,
    consent_default: str,
    now: datetime | None = None,
    where: Conditions | None = None,
) -> Draw:
    """Draw ``spec``'s audience into ``_jz_audience`` (user_id, segment, stratum, score,
    excluded, arm, variant) and describe it.

    ``consent_default`` is the marketing consent of users who stated none (``[privacy]
    default_marketing_consent``). ``where``: where the conditions run — a lake's Spark reads
    its profiles, segments, tags, consents, orders and scores (:class:`Conditions`; default
    the store's, closed after the draw).

    Raises
    ------
    InputError / NotFoundError
        Naming the field: an unknown segment, tag, trait or score, an expression that does
        not parse or is not a condition.
    """
    if where is not None:
        return _draw(where, spec, consent_default, campaign_now(store, now, where.lake))
    with Conditions(store) as mine:
        return _draw(mine, spec, consent_default, campaign_now(store, now))


def _draw(where: Conditions, spec: CampaignSpec, consent_default: str, now: datetime) -> Draw:
    store, b = where.store, where.backend
    a = spec.audience
    _matched(where, spec, now)
    segment_run = a.run or (
        spec.control.stratify if isinstance(spec.control.stratify, str) else None
    )
    if a.segment:
        sql = _members(where, a.segment.partition(":")[0], a.segment_code, "[audience] segment")
        store.run(f"DELETE FROM {AUDIENCE} WHERE user_id NOT IN (SELECT user_id FROM ({sql}))")
    if segment_run:
        field = "[audience] segment" if a.segment else "[control] stratify"
        sql = _members(where, segment_run, None, field)
        store.run(
            f"UPDATE {AUDIENCE} SET segment = m.segment FROM ({sql}) m "
            f"WHERE m.user_id = {AUDIENCE}.user_id"
        )
    for tag in a.tags:
        name, _, value = tag.partition("=")
        sql = where.sql(tagged(b, name, value or None, param="[audience] tags"))
        store.run(f"DELETE FROM {AUDIENCE} WHERE user_id NOT IN (SELECT user_id FROM ({sql}))")
    matched = _count(store)
    steps = _exclude(where, spec, now, consent_default)
    if a.top is not None:
        if a.top.score == "random":
            store.run(f"UPDATE {AUDIENCE} SET score = {unit_sql('user_id')}", [spec.name, "top"])
        else:
            sql = where.sql(scored(b, a.top.score, param="[audience] top score"))
            store.run(
                f"UPDATE {AUDIENCE} SET score = s.value FROM ({sql}) s "
                f"WHERE s.user_id = {AUDIENCE}.user_id"
            )
        store.run(
            f"""UPDATE {AUDIENCE} SET excluded = 'below_top' WHERE excluded IS NULL AND user_id NOT IN (
                SELECT user_id FROM {AUDIENCE} WHERE excluded IS NULL AND score IS NOT NULL
                ORDER BY score DESC, user_id LIMIT ?)""",
            [a.top.n],
        )
        steps.append(_step(store, f"top {a.top.n} by {a.top.score}", steps, matched))
    elif a.share is not None:
        store.run(
            f"UPDATE {AUDIENCE} SET excluded = 'outside_share' "
            f"WHERE excluded IS NULL AND {unit_sql('user_id')} >= ?",
            [spec.name, "share", a.share],
        )
        steps.append(_step(store, f"random share {a.share:g}", steps, matched))
    _assign(store, spec, stratify=segment_run if spec.control.stratify else None)
    return _describe(store, spec, now, matched, steps)


def _members(where: Conditions, run: str, segment: str | None, field: str) -> Sql:
    """The segment stage's members of a run; an unknown run is an error naming the spec's
    field (``[audience] segment: no segment run …``), as an unknown segment is."""
    try:
        rows, _ = members(where.backend, run, segment, param=field)
    except NotFoundError as exc:
        if exc.message.startswith(field):
            raise
        raise NotFoundError(f"{field}: {exc.message}", hint=exc.hint) from None
    return where.sql(rows)


def _matched(where: Conditions, spec: CampaignSpec, now: datetime) -> None:
    """``_jz_audience`` with every profiled user the ``where`` condition holds for — or, for
    a triggered campaign, every user its trigger holds for now (and ``where``, if given)."""
    b = where.backend
    if "profiles" not in engines.tables(b):
        where.inputs.columns()  # the "no profiles yet" of the engine
    profiles = b.table("profiles")
    rows = profiles
    if spec.audience.where is not None:
        node = condition(spec.audience.where, profiles, where.inputs.columns(), "[audience] where")
        rows = profiles.filter(ex.compile_ibis(node, profiles, now=profiles.as_of).fill_null(False))
    users = rows.select("user_id")
    if spec.trigger is not None:
        t = spec.trigger
        trig = triggered(
            stitched(b, ibis.literal(now)),
            t.event,
            now - timedelta(hours=t.lookback_hours),
            now - timedelta(minutes=t.after_minutes),
            t.without,
            now,
        ).select("user_id")
        users = trig.semi_join(users, "user_id") if spec.audience.where is not None else trig
    sql = where.matched(users)
    where.store.run(
        f"""CREATE OR REPLACE TEMP TABLE {AUDIENCE} AS
        SELECT user_id, NULL::VARCHAR AS segment, NULL::VARCHAR AS stratum, NULL::DOUBLE AS score,
               NULL::VARCHAR AS excluded, NULL::VARCHAR AS arm, NULL::VARCHAR AS variant
        FROM ({sql})"""
    )


def _count(store: Store, where: Sql = "excluded IS NULL") -> int:
    return int(store.scalar(f"SELECT count(*) FROM {AUDIENCE} WHERE {where}"))


def _step(store: Store, name: str, steps: list[Step], matched: int) -> Step:
    before = steps[-1].remaining if steps else matched
    remaining = _count(store)
    return Step(name, before - remaining, remaining)


def _exclude(
    where: Conditions, spec: CampaignSpec, now: datetime, consent_default: str
) -> list[Step]:
    """Mark excluded users, one reason per step, in the order a preview lists them;
    ``consent_default`` is a user's marketing consent when they stated none. Consents and
    orders are read where the conditions run; addresses, suppressions, members and
    deliveries are the store's."""
    store = where.store
    steps: list[Step] = []
    matched = _count(store)
    x = spec.exclude

    def mark(reason: str, condition_sql: Sql, params: list[object]) -> None:
        store.run(
            f"UPDATE {AUDIENCE} SET excluded = ? WHERE excluded IS NULL AND ({condition_sql})",
            [reason, *params],
        )
        steps.append(_step(store, reason, steps, matched))

    if spec.trigger is not None:  # taken in by an earlier run: a member once
        mark(
            "already_member",
            "user_id IN (SELECT user_id FROM campaign_members WHERE campaign = ?)",
            [spec.name],
        )
    if x.no_consent:
        sql = where.sql(
            consent.allowed_expr(where.backend, "marketing", spec.channel, consent_default)
        )
        mark("no_consent", f"user_id NOT IN (SELECT user_id FROM ({sql}))", [])
    # Who can be reached, and suppressed addresses, through the vault's blind index: the
    # addresses themselves are encrypted.
    reach = contacts_index_query()
    if spec.channel == "email":
        mark(
            "no_address",
            f"user_id NOT IN (SELECT user_id FROM ({reach}) WHERE email_index IS NOT NULL)",
            [],
        )
    elif spec.channel == "ads":
        mark(
            "no_address",
            f"user_id NOT IN (SELECT user_id FROM ({reach}) WHERE "
            "email_index IS NOT NULL OR phone_index IS NOT NULL)",
            [],
        )
    if spec.channel in ("email", "ads"):
        mark(
            "suppressed",
            f"user_id IN (SELECT c.user_id FROM ({reach}) c JOIN suppressions s "
            "ON s.channel = 'email' AND s.address_index = c.email_index)",
            [],
        )
    else:
        mark(
            "suppressed",
            "user_id IN (SELECT user_id FROM suppressions WHERE channel = ? AND user_id IS NOT NULL)",
            [spec.channel],
        )
    if x.bought_within_days is not None:
        events = stitched(where.backend, ibis.literal(now))
        sql = where.sql(buyers(events, now - timedelta(days=x.bought_within_days), now))
        mark(
            f"bought_within_{x.bought_within_days:g}_days",
            f"user_id IN (SELECT user_id FROM ({sql}))",
            [],
        )
    for other in x.campaigns:
        if store.scalar("SELECT count(*) FROM campaigns WHERE name = ?", [other]) == 0:
            raise NotFoundError(
                f"[exclude] campaigns: no campaign {other!r}", hint="name a stored campaign"
            )
        mark(
            f"in_campaign_{other}",
            "user_id IN (SELECT user_id FROM campaign_members WHERE campaign = ?)",
            [other],
        )
    if x.frequency_cap is not None:
        cap = x.frequency_cap
        mark(
            f"frequency_cap_{cap.messages}_in_{cap.days:g}_days",
            """user_id IN (SELECT user_id FROM deliveries
                WHERE state = 'sent' AND sent_at >= ? AND campaign <> ?
                GROUP BY user_id HAVING count(*) >= ?)""",
            [now - timedelta(days=cap.days), spec.name, cap.messages],
        )
    return steps


def _assign(store: Store, spec: CampaignSpec, *, stratify: str | None) -> None:
    """Each eligible user's arm and variant (see :mod:`jingzhun.campaign.assign`)."""
    share = spec.control.share
    name = spec.name
    store.run(f"ALTER TABLE {AUDIENCE} ADD COLUMN u_control DOUBLE")
    store.run(f"ALTER TABLE {AUDIENCE} ADD COLUMN u_variant DOUBLE")
    store.run(
        f"UPDATE {AUDIENCE} SET u_control = {unit_sql('user_id')}, "
        f"u_variant = {unit_sql('user_id')} WHERE excluded IS NULL",
        [name, "control", name, "variant"],
    )
    if stratify:
        store.run(
            f"UPDATE {AUDIENCE} SET stratum = coalesce(segment, '(none)') WHERE excluded IS NULL"
        )
        store.run(
            f"""UPDATE {AUDIENCE} SET arm = r.arm FROM (
                SELECT user_id, CASE WHEN row_number() OVER (PARTITION BY stratum ORDER BY u_control, user_id)
                       <= round(? * count(*) OVER (PARTITION BY stratum)) THEN 'control' ELSE 'treatment' END AS arm
                FROM {AUDIENCE} WHERE excluded IS NULL) r
            WHERE r.user_id = {AUDIENCE}.user_id""",
            [share],
        )
    else:
        store.run(
            f"UPDATE {AUDIENCE} SET arm = CASE WHEN u_control < ? THEN 'control' ELSE 'treatment' END "
            "WHERE excluded IS NULL",
            [share],
        )
    names = [v.name for v in spec.variants]
    sql, params = pick_sql("u_variant", names, spec.weights())
    store.run(f"UPDATE {AUDIENCE} SET variant = {sql} WHERE excluded IS NULL", params)


def _describe(
    store: Store, spec: CampaignSpec, now: datetime, matched: int, steps: list[Step]
) -> Draw:
    arms = dict(
        store.rows(f"SELECT arm, count(*) FROM {AUDIENCE} WHERE excluded IS NULL GROUP BY arm")
    )
    seg = store.sql(
        f"""SELECT coalesce(segment, '(none)') AS segment,
                   count(*) FILTER (arm = 'treatment') AS treatment,
                   count(*) FILTER (arm = 'control') AS control
            FROM {AUDIENCE} WHERE excluded IS NULL GROUP BY 1 ORDER BY 2 DESC, 1"""
    ).df()
    var = store.sql(
        f"""SELECT variant, count(*) FILTER (arm = 'treatment') AS treatment,
                   count(*) FILTER (arm = 'control') AS control
            FROM {AUDIENCE} WHERE excluded IS NULL AND variant IS NOT NULL GROUP BY 1 ORDER BY 1"""
    ).df()
    treatment, control = int(arms.get("treatment", 0)), int(arms.get("control", 0))
    return Draw(
        campaign=spec.name,
        now=now,
        matched=matched,
        steps=steps,
        members=treatment + control,
        treatment=treatment,
        control=control,
        by_segment=seg.to_dict("records"),
        by_variant=var.to_dict("records"),
    )


__all__ = [
    "AUDIENCE",
    "STORE_SOURCES",
    "Conditions",
    "Draw",
    "Sources",
    "Step",
    "campaign_now",
    "draw",
]
