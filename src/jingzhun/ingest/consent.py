"""Consent: per purpose and channel, its history, and what is in force — one definition.

Every statement of consent is a row of ``consents`` (user, purpose, channel, status, ts,
source); nothing is overwritten, so the history is the table. The row in force for a user,
purpose and channel is the newest by ``ts`` among that channel's rows and the purpose's
``any`` rows: an unsubscribe from email (REVOKED, email) after a sign-up opt-in (GRANTED,
any) withdraws email only, and a later opt-in on ``any`` grants every channel again (at the
same time, the statement about the channel goes first, and a refusal before a grant). A user
with no row for a purpose is treated as the configured default (``[privacy]
default_marketing_consent``, DENIED unless set).

Where rows come from (each with its source):

* ``consent_updated`` events (files, Segment, the tracking API): ``properties.purpose``,
  ``properties.status`` and ``properties.channel`` (or ``consent_channel``; ``any`` when
  absent), at the event's time. An unknown purpose, status or channel quarantines the event
  with its reason (:func:`event_checks`); a consent event needs a ``user_id``.
* users files (and identify traits): a column ``consent_<purpose>`` or
  ``consent_<purpose>_<channel>`` holding GRANTED, DENIED, REVOKED (or true/false), and
  ``marketing_opt_in`` (true: GRANTED, false: DENIED marketing on any channel), at the batch's
  time, written only where it differs from the row in force for that exact purpose and
  channel — re-ingesting a file adds nothing, and does not undo a later unsubscribe.
* the API (``POST /v1/consents``) and the unsubscribe link (:func:`record`).

Audiences (:func:`allowed_expr`) and delivery (:func:`allowed`) ask here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jingzhun.checks import shown
from jingzhun.errors import InputError
from jingzhun.store import Store
from jingzhun.store.sql import Sql, lit

if TYPE_CHECKING:
    import ibis.expr.types as ir

#: Why a user's data may be used.
PURPOSES: tuple[str, ...] = ("marketing", "analytics", "personalization")
#: Where: a campaign's channel, or every channel (``any``).
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "webhook", "ads", "any")
#: What the user said. REVOKED is a withdrawal of consent given before; both it and DENIED
#: forbid the purpose.
STATUSES: tuple[str, ...] = ("GRANTED", "DENIED", "REVOKED")
Q = "'"  # quotes a value in a reason
#: The event that states a consent.
EVENT = "consent_updated"

#: The order that puts the statement in force first: the newest; at the same time, one about
#: the channel before one about every channel, and a refusal before a grant.
NEWEST = "ts DESC, channel = 'any', status = 'GRANTED', source"


def _newest(partition: str) -> Sql:
    """The QUALIFY that keeps the statement in force in each ``partition``."""
    return f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {NEWEST}) = 1"


#: Users-file values of a consent column (and of marketing_opt_in) read as GRANTED / DENIED.
_YES = ("true", "1", "yes", "y", "t", "granted")
_NO = ("false", "0", "no", "n", "f", "denied")

#: A users-file attribute that states a consent: consent_<purpose>[_<channel>].
ATTRIBUTE_PATTERN = (
    f"^consent_({'|'.join(PURPOSES)})(_({'|'.join(c for c in CHANNELS if c != 'any')}))?$"
)


def _in(expr: str, values: Iterable[str]) -> str:
    return f"{expr} IN ({', '.join(lit(v) for v in values)})"


def status_sql(text: str) -> str:
    """A users-file cell (text) as GRANTED, DENIED or REVOKED; NULL when it is none of them."""
    v = f"lower(trim({text}))"
    return (
        f"CASE WHEN {_in(v, _YES)} THEN 'GRANTED' WHEN {_in(v, _NO)} THEN 'DENIED' "
        f"WHEN {v} = 'revoked' THEN 'REVOKED' END"
    )


def event_checks(prop: Callable[[str], str]) -> list[tuple[str, str]]:
    """(condition, message) pairs, as SQL over the typed row, that quarantine a consent event
    whose purpose, status or channel is missing or unknown. ``prop`` formats a property key
    into the SQL of its text value (NULL when absent)."""
    is_consent = f"t_event = {lit(EVENT)}"
    purpose, status = prop("purpose"), prop("status")
    channel = f"coalesce({prop('consent_channel')}, {prop('channel')})"
    one_of = {
        "purpose": (purpose, PURPOSES, "lower"),
        "status": (status, STATUSES, "upper"),
    }
    checks: list[tuple[str, str]] = []
    for key, (expr, valid, case) in one_of.items():
        checks.append(
            (
                f"{is_consent} AND {expr} IS NULL",
                lit(f"{EVENT} needs properties.{key} ({', '.join(valid)})"),
            )
        )
        checks.append(
            (
                f"{is_consent} AND NOT {_in(f'{case}(trim({expr}))', valid)}",
                f"{lit(key + ': ' + Q)} || {expr} || {lit(Q + ' is not one of ' + ', '.join(valid))}",
            )
        )
    checks.append(
        (
            f"{is_consent} AND NOT {_in(f'lower(trim({channel}))', CHANNELS)}",
            f"{lit('channel: ' + Q)} || {channel} || {lit(Q + ' is not one of ' + ', '.join(CHANNELS))}",
        )
    )
    return checks


def users_checks(columns: dict[str, str], attributes: str) -> list[tuple[str, str]]:
    """(condition, message) pairs that quarantine a users row whose consent cell is none of
    GRANTED, DENIED, REVOKED, true or false: ``columns`` maps each consent column of the file
    to the SQL of its text, ``attributes`` is the SQL of a given attributes object (identify
    traits), whose ``consent_*`` keys are checked the same way."""
    bad = "not GRANTED, DENIED or REVOKED (or true/false)"
    checks = [
        (
            f"{v} IS NOT NULL AND {status_sql(v)} IS NULL",
            f"{lit(c + ': ' + Q)} || {v} || {lit(Q + ' is ' + bad)}",
        )
        for c, v in columns.items()
    ]
    value = _consent_value(attributes, "k")
    keys = (
        f"list_filter(json_keys({attributes}), lambda k: {value} IS NOT NULL "
        f"AND {status_sql(value)} IS NULL)"
    )
    checks.append(
        (
            f"{attributes} IS NOT NULL AND contains(CAST({attributes} AS VARCHAR), 'consent_') "
            f"AND len({keys}) > 0",
            f"array_to_string({keys}, ', ') || {lit(': ' + bad)}",
        )
    )
    return checks


def _consent_value(attributes: str, key: str) -> str:
    """The text of ``attributes``' value at ``key`` (SQL of a top-level key), null unless the
    key names a consent (:data:`ATTRIBUTE_PATTERN`). The path is built only from such a key:
    any other key — empty, or with a dot or quote — is no JSON path (DuckDB refuses ``$.``),
    and AND does not keep DuckDB from evaluating it, CASE does."""
    return (
        f"CASE WHEN regexp_full_match({key}, {lit(ATTRIBUTE_PATTERN)}) "
        f"THEN json_extract_string({attributes}, '$.' || {key}) END"
    )


def from_events_sql(rows: Sql) -> Sql:
    """The consent rows stated by the ``consent_updated`` events among ``rows`` (a relation
    of validated events with ``user_id``, ``ts``, ``properties``), for ``INSERT INTO consents``
    with one parameter: the source."""

    def p(key: str) -> str:
        return f"json_extract_string(properties, {lit('$.' + key)})"

    return Sql(
        f"""SELECT user_id, lower(trim({p("purpose")})),
               coalesce(lower(trim(coalesce({p("consent_channel")}, {p("channel")}))), 'any'),
               upper(trim({p("status")})), ts, ?
        FROM {rows} WHERE event = {lit(EVENT)} AND user_id IS NOT NULL"""
    )


def from_users_sql(stage: Sql) -> Sql:
    """The consent rows a users batch states (``stage``: validated users with ``user_id`` and
    ``attributes``) that differ from the row in force for their exact purpose and channel,
    for ``INSERT INTO consents``; parameters: the batch's time, the source."""
    stated = f"""
        SELECT user_id, regexp_extract(k, {lit(ATTRIBUTE_PATTERN)}, 1) AS purpose,
               coalesce(NULLIF(regexp_extract(k, {lit(ATTRIBUTE_PATTERN)}, 3), ''), 'any')
                   AS channel,
               {status_sql(_consent_value("attributes", "k"))} AS status
        FROM (SELECT user_id, attributes,
                     unnest(list_filter(json_keys(attributes),
                            lambda k: regexp_full_match(k, {lit(ATTRIBUTE_PATTERN)}))) AS k
              FROM {stage}
              WHERE attributes IS NOT NULL AND contains(CAST(attributes AS VARCHAR), 'consent_'))
        UNION ALL
        SELECT user_id, 'marketing', 'any',
               {status_sql("json_extract_string(attributes, '$.marketing_opt_in')")}
        FROM {stage}
        WHERE json_extract_string(attributes, '$.marketing_opt_in') IS NOT NULL"""
    return Sql(
        f"""WITH stated AS (SELECT DISTINCT ON (user_id, purpose, channel) *
                            FROM ({stated}) WHERE status IS NOT NULL),
        held AS (SELECT user_id, purpose, channel, status
                 FROM consents
                 WHERE user_id IN (SELECT user_id FROM stated)
                 {_newest("user_id, purpose, channel")})
        SELECT s.user_id, s.purpose, s.channel, s.status, ?::TIMESTAMP, ?
        FROM stated s LEFT JOIN held h USING (user_id, purpose, channel)
        WHERE h.status IS DISTINCT FROM s.status"""
    )


def current_query() -> Sql:
    """A query of every user's consent in force per purpose and channel (user_id, purpose,
    channel, status, ts, source), one ``?``: a user id, or NULL for every user."""
    return Sql(
        f"""SELECT user_id, purpose, channel, status, ts, source
        FROM consents WHERE (? IS NULL OR user_id = ?)
        {_newest("user_id, purpose, channel")}
        ORDER BY user_id, purpose, channel"""
    )


def allowed_expr(backend: Any, purpose: str, channel: str, default: str) -> ir.Table:
    """The ``user_id`` of every user whose consent in force allows ``purpose`` on ``channel``
    (``default`` for users with none): an Ibis expression over ``backend``'s ``users`` and
    ``consents`` — a store's DuckDB or a lake's Spark (``--engine spark``) runs the same one.

    The statement in force is first in :data:`NEWEST`'s order, written here as Ibis keys (a
    boolean sorts false first on both engines, as in the SQL)."""
    import ibis  # here: ingest, which imports this module, runs without Ibis (0.3 s)

    _check(purpose, channel, default)
    c = backend.table("consents")
    c = c.filter((c.purpose == purpose) & c.channel.isin([channel, "any"]))
    rank = ibis.row_number().over(
        group_by=c.user_id,
        order_by=[c.ts.desc(), c.channel == "any", c.status == "GRANTED", c.source],
    )
    latest = c.select("user_id", "status", rank=rank).filter(ibis._.rank == 0)
    users = backend.table("users").select("user_id")
    joined = users.left_join(latest, "user_id")
    ok = (joined.status == "GRANTED").fill_null(default == "GRANTED")
    return joined.filter(ok).select("user_id")


def allowed(
    store: Store, users: Sequence[str], purpose: str, channel: str, default: str
) -> set[str]:
    """Which of ``users`` the consent in force allows ``purpose`` on ``channel`` now (delivery
    asks again just before sending)."""
    _check(purpose, channel, default)
    rows = store.rows(
        f"""SELECT u.user_id, l.status FROM (SELECT unnest(?::VARCHAR[]) AS user_id) u
        LEFT JOIN (SELECT user_id, status FROM consents
                   WHERE purpose = ? AND channel IN (?, 'any')
                     AND user_id IN (SELECT unnest(?::VARCHAR[]))
                   {_newest("user_id")}
                   ) l USING (user_id)""",
        [list(users), purpose, channel, list(users)],
    )
    return {u for u, s in rows if (s or default) == "GRANTED"}


def statement(purpose: str, channel: str, status: str) -> tuple[str, str, str]:
    """A consent statement a person typed (the API, the CLI), checked and normalized:
    (purpose, channel, status).

    Raises
    ------
    InputError
        Naming the part (``purpose``, ``channel`` or ``status``) that is none of its values.
    """
    given = {
        "purpose": (str(purpose).strip().lower(), PURPOSES),
        "channel": (str(channel).strip().lower() or "any", CHANNELS),
        "status": (str(status).strip().upper(), STATUSES),
    }
    for name, (value, valid) in given.items():
        if value not in valid:
            raise InputError(f"{name} {shown(value)} is not one of {', '.join(valid)}", param=name)
    return given["purpose"][0], given["channel"][0], given["status"][0]


def record(
    store: Store,
    user_id: str,
    *,
    purpose: str,
    channel: str,
    status: str,
    source: str,
    ts: datetime,
) -> None:
    """Add one consent statement (the API, an unsubscribe)."""
    _check(purpose, channel, status)
    store.run(
        "INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?)",
        [user_id, purpose, channel, status, ts, source],
    )


def _check(purpose: str, channel: str, status: str) -> None:
    # Callers pass values from code or validated requests; a wrong one is a programming error.
    if purpose not in PURPOSES or channel not in CHANNELS or status not in STATUSES:
        raise ValueError(f"not a consent: {purpose!r}, {channel!r}, {status!r}")


__all__ = [
    "ATTRIBUTE_PATTERN",
    "CHANNELS",
    "EVENT",
    "PURPOSES",
    "STATUSES",
    "allowed",
    "allowed_expr",
    "current_query",
    "event_checks",
    "from_events_sql",
    "from_users_sql",
    "record",
    "statement",
    "status_sql",
    "users_checks",
]
