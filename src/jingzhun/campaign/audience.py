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
from datetime import datetime, timedelta
from typing import Any

import ibis

from jingzhun.campaign.assign import pick_sql, unit_sql
from jingzhun.campaign.spec import CampaignSpec
from jingzhun.contracts.results import Result
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest import consent
from jingzhun.ingest.read import (
    buyers_query,
    contacts_index_query,
    latest_event_time,
    triggered_query,
)
from jingzhun.predict.read import score_query
from jingzhun.profile import expr as ex
from jingzhun.profile.build import profile_columns
from jingzhun.profile.read import tag_query
from jingzhun.profile.tags import condition
from jingzhun.segment.read import members_query
from jingzhun.store import Store
from jingzhun.store.sql import Sql

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


def campaign_now(store: Store, now: datetime | None) -> datetime:
    """The campaign's clock: ``now`` if given, else just after the newest stored event."""
    if now is not None:
        return now
    latest = latest_event_time(store)
    if latest is None:
        raise InputError("the store has no events", hint="ingest events before a campaign")
    return latest + timedelta(microseconds=1)


def draw(
    store: Store, spec: CampaignSpec, *, consent_default: str, now: datetime | None = None
) -> Draw:
    """Draw ``spec``'s audience into ``_jz_audience`` (user_id, segment, stratum, score,
    excluded, arm, variant) and describe it.

    ``consent_default`` is the marketing consent of users who stated none (``[privacy]
    default_marketing_consent``).

    Raises
    ------
    InputError / NotFoundError
        Naming the field: an unknown segment, tag, trait or score, an expression that does
        not parse or is not a condition.
    """
    now = campaign_now(store, now)
    a = spec.audience
    _matched(store, spec, now)
    segment_run = a.run or (
        spec.control.stratify if isinstance(spec.control.stratify, str) else None
    )
    if a.segment:
        sql, params, _ = _members(
            store, a.segment.partition(":")[0], a.segment_code, "[audience] segment"
        )
        store.run(
            f"DELETE FROM {AUDIENCE} WHERE user_id NOT IN (SELECT user_id FROM ({sql}))", params
        )
    if segment_run:
        where = "[audience] segment" if a.segment else "[control] stratify"
        sql, params, _ = _members(store, segment_run, None, where)
        store.run(
            f"UPDATE {AUDIENCE} SET segment = m.segment FROM ({sql}) m "
            f"WHERE m.user_id = {AUDIENCE}.user_id",
            params,
        )
    for tag in a.tags:
        name, _, value = tag.partition("=")
        sql, params = tag_query(store, name, value or None, param="[audience] tags")
        store.run(
            f"DELETE FROM {AUDIENCE} WHERE user_id NOT IN (SELECT user_id FROM ({sql}))", params
        )
    matched = _count(store)
    steps = _exclude(store, spec, now, consent_default)
    if a.top is not None:
        if a.top.score == "random":
            store.run(f"UPDATE {AUDIENCE} SET score = {unit_sql('user_id')}", [spec.name, "top"])
        else:
            sql, params = score_query(store, a.top.score, param="[audience] top score")
            store.run(
                f"UPDATE {AUDIENCE} SET score = s.value FROM ({sql}) s "
                f"WHERE s.user_id = {AUDIENCE}.user_id",
                params,
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


def _members(
    store: Store, run: str, segment: str | None, where: str
) -> tuple[Sql, list[object], str]:
    """The segment stage's query of a run's members; an unknown run is an error naming the
    spec's field (``[audience] segment: no segment run …``), as an unknown segment is."""
    try:
        return members_query(store, run, segment, param=where)
    except NotFoundError as exc:
        if exc.message.startswith(where):
            raise
        raise NotFoundError(f"{where}: {exc.message}", hint=exc.hint) from None


def _matched(store: Store, spec: CampaignSpec, now: datetime) -> None:
    """``_jz_audience`` with every profiled user the ``where`` condition holds for — or, for
    a triggered campaign, every user its trigger holds for now (and ``where``, if given)."""
    columns = profile_columns(store)
    profiles = store.ibis().table("profiles")
    rows = profiles
    if spec.audience.where is not None:
        node = condition(spec.audience.where, profiles, columns, "[audience] where")
        rows = profiles.filter(ex.compile_ibis(node, profiles, now=profiles.as_of).fill_null(False))
    sql = ibis.to_sql(rows.select("user_id"), dialect="duckdb")
    params: list[object] = []
    if spec.trigger is not None:
        t = spec.trigger
        trig = triggered_query(t.without is not None)
        params = [
            t.event,
            now - timedelta(hours=t.lookback_hours),
            now - timedelta(minutes=t.after_minutes),
        ]
        if t.without is not None:
            params += [t.without, now]
        if spec.audience.where is not None:
            sql = f"SELECT user_id FROM ({trig}) WHERE user_id IN (SELECT user_id FROM ({sql}))"
        else:
            sql = f"SELECT user_id FROM ({trig})"
    store.run(
        f"""CREATE OR REPLACE TEMP TABLE {AUDIENCE} AS
        SELECT user_id, NULL::VARCHAR AS segment, NULL::VARCHAR AS stratum, NULL::DOUBLE AS score,
               NULL::VARCHAR AS excluded, NULL::VARCHAR AS arm, NULL::VARCHAR AS variant
        FROM ({sql})""",
        params,
    )


def _count(store: Store, where: Sql = "excluded IS NULL") -> int:
    return int(store.scalar(f"SELECT count(*) FROM {AUDIENCE} WHERE {where}"))


def _step(store: Store, name: str, steps: list[Step], matched: int) -> Step:
    before = steps[-1].remaining if steps else matched
    remaining = _count(store)
    return Step(name, before - remaining, remaining)


def _exclude(store: Store, spec: CampaignSpec, now: datetime, consent_default: str) -> list[Step]:
    """Mark excluded users, one reason per step, in the order a preview lists them;
    ``consent_default`` is a user's marketing consent when they stated none."""
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
        sql, params = consent.allowed_query("marketing", spec.channel, consent_default)
        mark("no_consent", f"user_id NOT IN (SELECT user_id FROM ({sql}))", params)
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
        sql, _ = buyers_query()
        mark(
            f"bought_within_{x.bought_within_days:g}_days",
            f"user_id IN (SELECT user_id FROM ({sql}))",
            [now - timedelta(days=x.bought_within_days), now],
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


__all__ = ["AUDIENCE", "Draw", "Step", "campaign_now", "draw"]
