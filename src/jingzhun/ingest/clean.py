"""The cleaning report: outlier orders, bot-like bursts, duplicates, missing attributes.

Nothing is deleted unless asked. Suspicious events are *flagged* in ``event_flags`` (one row
per event and flag, replaced on every run), so later stages can choose to skip them. With
``remove``, flagged events of the named kinds move to the quarantine (reason ``removed by
clean: …``) in one transaction, from where a replay can bring them back.

* **Outlier orders**: order values (sum of line revenue) are log-normal, so they are judged on
  the log scale: modified z-score ``0.6745 (x - median) / MAD`` beyond the threshold
  (Iglewicz & Hoaglin), or outside ``[Q1 - k IQR, Q3 + k IQR]``.
* **Bursts**: more events than the threshold in one clock minute from one visitor (user or
  anonymous id) — scrapers and bots, not shoppers.
* **Duplicates**: the share of rows each ingest skipped as duplicate event ids, and rows that
  are stored twice under different ids (same visitor, event, item, order and time).
* **Missing attributes**: the share of nulls in every column of events, users and items.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from jingzhun.checks import bounded_int, finite
from jingzhun.config import MAX_BURST, MAX_OUTLIER_THRESHOLD, CleanSettings
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError
from jingzhun.ingest.pipeline import new_batch_id, record_batch
from jingzhun.ingest.validate import IngestOptions
from jingzhun.store import Store
from jingzhun.store.sql import ident

FLAGS = ("outlier_order", "bot_burst", "content_duplicate")
Flag = Literal["outlier_order", "bot_burst", "content_duplicate"]

_ACTOR = "coalesce(user_id, 'anon:' || anonymous_id)"
_E_ACTOR = "coalesce(e.user_id, 'anon:' || e.anonymous_id)"
_CONTENT = "event, coalesce(user_id, ''), coalesce(anonymous_id, ''), coalesce(item_id, ''), coalesce(order_id, ''), ts"


@dataclass
class CleaningReport:
    """What :func:`clean` found, and did.

    Mind the units: outliers are counted in **orders** (an order's value is the sum of its
    lines), while ``flagged`` and ``removed`` count **events**: an outlier order flags each of
    its order lines (``order_completed`` events), so 3 outlier orders may flag 6 events.

    Attributes
    ----------
    outliers : dict
        ``method``, ``threshold``, ``orders`` judged, ``outliers`` (orders; ``high``, ``low``),
        the fences in money and up to five ``examples``.
    bursts : dict
        Visitors (``actors``), clock ``minutes`` and ``events`` over the burst threshold.
    duplicates : dict
        Rows each ingest skipped as duplicates, and events stored twice under different ids.
    missing : list of dict
        Per table and column: rows, missing values and their rate.
    flagged : dict
        Events flagged, per flag (empty with ``flag=False``).
    removed : dict
        Events moved to the quarantine, per flag and in ``total``.
    """

    outliers: dict[str, object] = field(default_factory=dict)
    bursts: dict[str, object] = field(default_factory=dict)
    duplicates: dict[str, object] = field(default_factory=dict)
    missing: list[dict[str, object]] = field(default_factory=list)
    flagged: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _value(log_value: float) -> float:
    """An order value from its ln(1 + value)."""
    return round(math.expm1(float(log_value)), 2)


def _outliers(store: Store, settings: CleanSettings) -> dict[str, object]:
    con = store.con
    method = settings.outlier_method
    k = (
        settings.outlier_threshold
        if settings.outlier_threshold is not None
        else (3.5 if method == "mad" else 3.0)
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _jz_orders AS
        SELECT order_id, sum(revenue) AS value, ln(1 + sum(revenue)) AS x
        FROM events WHERE event = 'order_completed' AND order_id IS NOT NULL AND revenue IS NOT NULL
        GROUP BY order_id
        """
    )
    n = con.execute("SELECT count(*) FROM _jz_orders").fetchone()[0]
    if n == 0:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _jz_outliers (order_id VARCHAR, value DOUBLE, score DOUBLE)"
        )
        return {
            "method": method,
            "threshold": k,
            "orders": 0,
            "outliers": 0,
            "high": 0,
            "low": 0,
            "examples": [],
        }
    # The statistics go in as parameters: the score is SQL text fixed here, never a number
    # formatted into it (a Python ``inf`` or ``nan`` is not SQL).
    params: dict[str, float] = {"k": k}
    if method == "mad":
        med, mad = con.execute(
            "SELECT median(x), median(abs(x - (SELECT median(x) FROM _jz_orders))) FROM _jz_orders"
        ).fetchone()
        scale = mad / 0.6745 if mad else None
        score = "(x - $med) / $scale" if scale else "0"
        params |= {"med": med, "scale": scale} if scale else {}
        stats = {"median_value": _value(med), "mad_log": round(float(mad), 4)}
        fences = (_value(med - k * scale), _value(med + k * scale)) if scale else (None, None)
    else:
        q1, q3 = con.execute(
            "SELECT quantile_cont(x, 0.25), quantile_cont(x, 0.75) FROM _jz_orders"
        ).fetchone()
        iqr = q3 - q1
        # Distance beyond the nearer fence, in IQRs (0 inside the box).
        score = (
            "CASE WHEN x > $q3 THEN (x - $q3) / $iqr WHEN x < $q1 THEN -($q1 - x) / $iqr ELSE 0 END"
            if iqr
            else "0"
        )
        params |= {"q1": q1, "q3": q3, "iqr": iqr} if iqr else {}
        stats = {"q1_value": _value(q1), "q3_value": _value(q3)}
        fences = (_value(q1 - k * iqr), _value(q3 + k * iqr)) if iqr else (None, None)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _jz_outliers AS SELECT order_id, value, {score} AS score FROM _jz_orders WHERE abs({score}) > $k",
        params,
    )
    flagged = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE score > 0) FROM _jz_outliers"
    ).fetchone()
    examples = con.execute(
        "SELECT order_id, round(value, 2), round(score, 2) FROM _jz_outliers ORDER BY abs(score) DESC LIMIT 5"
    ).fetchall()
    return {
        "method": method,
        "threshold": k,
        "orders": int(n),
        "outliers": int(flagged[0]),
        "high": int(flagged[1]),
        "low": int(flagged[0] - flagged[1]),
        **stats,
        # Order values beyond which an order is an outlier (in money, not on the log scale).
        "fences": {"low": fences[0], "high": fences[1]},
        "examples": [{"order_id": o, "value": float(v), "score": float(s)} for o, v, s in examples],
    }


def _bursts(store: Store, settings: CleanSettings) -> dict[str, object]:
    con = store.con
    limit = settings.burst_events_per_minute
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _jz_bursts AS
        SELECT {_ACTOR} AS actor, date_trunc('minute', ts) AS minute, count(*) AS n
        FROM events GROUP BY ALL HAVING count(*) > ?
        """,
        [limit],
    )
    actors, minutes, events = con.execute(
        "SELECT count(DISTINCT actor), count(*), coalesce(sum(n), 0) FROM _jz_bursts"
    ).fetchone()
    top = con.execute(
        "SELECT actor, count(*) AS minutes, sum(n) AS events, max(n) AS peak FROM _jz_bursts GROUP BY actor ORDER BY events DESC LIMIT 5"
    ).fetchall()
    return {
        "threshold_per_minute": limit,
        "actors": int(actors),
        "minutes": int(minutes),
        "events": int(events),
        "top": [
            {"actor": a, "minutes": int(m), "events": int(e), "peak_per_minute": int(p)}
            for a, m, e, p in top
        ],
    }


def _duplicates(store: Store) -> dict[str, object]:
    con = store.con
    per_kind = con.execute(
        "SELECT kind, sum(rows_read), sum(duplicates) FROM ingest_batches WHERE replay_of IS NULL GROUP BY kind ORDER BY kind"
    ).fetchall()
    total, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT ({_CONTENT})) FROM events"
    ).fetchone()
    return {
        "ingest": {
            kind: {"rows_read": int(r), "duplicates": int(d), "rate": round(d / r, 6) if r else 0.0}
            for kind, r, d in per_kind
        },
        "content_duplicates": int(total - distinct),
        "content_duplicate_rate": round((total - distinct) / total, 6) if total else 0.0,
    }


def _missing(store: Store) -> list[dict[str, object]]:
    out = []
    for table in ("events", "users", "items"):
        cols = [
            c
            for c in store.columns(table)
            if c not in ("batch_id", "event_key", "received_at", "updated_at")
        ]
        counted = ", ".join(f"count({ident(c)})" for c in cols)
        counts = store.sql(f"SELECT count(*), {counted} FROM {ident(table)}").fetchone()
        n = counts[0]
        for c, present in zip(cols, counts[1:], strict=True):
            out.append(
                {
                    "table": table,
                    "column": c,
                    "rows": int(n),
                    "missing": int(n - present),
                    "rate": round((n - present) / n, 6) if n else 0.0,
                }
            )
    return out


def check_settings(settings: CleanSettings) -> None:
    """Check the settings again: options given for one run (``model_copy(update=…)``) skip
    the validation ``jingzhun.toml`` gets. Errors name the CLI options."""
    if settings.outlier_method not in ("mad", "iqr"):
        raise InputError(
            f"--method {str(settings.outlier_method)[:40]!r} is unknown", hint="use mad or iqr"
        )
    if settings.outlier_threshold is not None:
        finite(
            settings.outlier_threshold, "--threshold", lo=0, lo_open=True, hi=MAX_OUTLIER_THRESHOLD
        )
    bounded_int(settings.burst_events_per_minute, "--burst", lo=1, hi=MAX_BURST)


def clean(
    store: Store, settings: CleanSettings, *, flag: bool = True, remove: tuple[str, ...] = ()
) -> CleaningReport:
    """Build the cleaning report; flag suspicious events; optionally move them to quarantine."""
    unknown = [r for r in remove if r not in FLAGS]
    if unknown:
        raise InputError(
            f"--remove {unknown[0]!r} is not a flag", hint=f"use one of: {', '.join(FLAGS)}"
        )
    check_settings(settings)
    report = CleaningReport()
    report.outliers = _outliers(store, settings)
    report.bursts = _bursts(store, settings)
    report.duplicates = _duplicates(store)
    report.missing = _missing(store)
    if flag or remove:
        report.flagged = _flag(store)
    if remove:
        report.removed = _remove(store, remove)
    for t in ("_jz_orders", "_jz_outliers", "_jz_bursts"):
        store.sql(f"DROP TABLE IF EXISTS temp.{ident(t)}")
    return report


def _flag(store: Store) -> dict[str, int]:
    now = utcnow()
    with store.transaction() as con:
        con.execute("DELETE FROM event_flags WHERE list_contains(?, flag)", [list(FLAGS)])
        con.execute(
            """
            INSERT INTO event_flags
            SELECT e.event_id, 'outlier_order', 'order ' || o.order_id || ' worth ' || round(o.value, 2) || ' (score ' || round(o.score, 1) || ')', ?
            FROM events e JOIN _jz_outliers o USING (order_id) WHERE e.event = 'order_completed'
            """,
            [now],
        )
        con.execute(
            f"""
            INSERT INTO event_flags
            SELECT e.event_id, 'bot_burst', b.n || ' events in the minute ' || strftime(b.minute, '%Y-%m-%d %H:%M'), ?
            FROM events e JOIN _jz_bursts b ON b.actor = {_E_ACTOR}
                                            AND b.minute = date_trunc('minute', e.ts)
            """,
            [now],
        )
        con.execute(
            f"""
            INSERT INTO event_flags
            SELECT event_id, 'content_duplicate', 'same visitor, event, item, order and time as ' || first_id, ?
            FROM (SELECT event_id, first_value(event_id) OVER w AS first_id, row_number() OVER w AS k
                  FROM events WHERE ({_CONTENT}) IN (
                      SELECT ({_CONTENT}) FROM events GROUP BY ALL HAVING count(*) > 1)
                  WINDOW w AS (PARTITION BY {_CONTENT} ORDER BY event_id))
            WHERE k > 1
            """,
            [now],
        )
        rows = con.execute("SELECT flag, count(*) FROM event_flags GROUP BY flag").fetchall()
    counts = dict.fromkeys(FLAGS, 0)
    counts.update({f: int(n) for f, n in rows})
    return counts


def _remove(store: Store, kinds: tuple[str, ...]) -> dict[str, int]:
    """Move events flagged with ``kinds`` to the quarantine, atomically."""
    now = utcnow()
    batch_id = new_batch_id(now)
    with store.transaction() as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _jz_remove AS SELECT event_id, min(flag) AS flag, min(detail) AS detail FROM event_flags WHERE list_contains(?, flag) GROUP BY event_id",
            [list(kinds)],
        )
        n = con.execute("SELECT count(*) FROM _jz_remove").fetchone()[0]
        record_batch(
            con,
            batch_id=batch_id,
            kind="events",
            sources=["clean"],
            options=IngestOptions("events").to_json(),
            started_at=now,
        )
        con.execute(
            """
            INSERT INTO quarantine (quarantine_id, batch_id, kind, source, line_no, raw, reason, received_at)
            SELECT (SELECT coalesce(max(quarantine_id), 0) FROM quarantine) + row_number() OVER (ORDER BY e.ts, e.event_id),
                   ?, 'events', 'clean', NULL,
                   to_json(struct_pack(event_id := e.event_id, event := e.event, user_id := e.user_id,
                       anonymous_id := e.anonymous_id, order_id := e.order_id, item_id := e.item_id,
                       quantity := e.quantity::VARCHAR, price := e.price::VARCHAR, revenue := e.revenue::VARCHAR,
                       currency := e.currency, channel := e.channel, campaign_id := e.campaign_id,
                       ts := strftime(e.ts, '%Y-%m-%dT%H:%M:%S.%fZ'), properties := e.properties::VARCHAR))::VARCHAR,
                   'removed by clean: ' || r.flag || ' (' || r.detail || ')', ?
            FROM events e JOIN _jz_remove r USING (event_id)
            """,
            [batch_id, now],
        )
        # A re-ingest of the events' file keeps them out; a replay of these rows brings them back.
        con.execute(
            """
            INSERT INTO removed_events
            SELECT json_extract_string(raw, '$.event_id'), quarantine_id, received_at
            FROM quarantine WHERE batch_id = ?
            """,
            [batch_id],
        )
        con.execute("DELETE FROM events WHERE event_id IN (SELECT event_id FROM _jz_remove)")
        con.execute("DELETE FROM event_flags WHERE event_id IN (SELECT event_id FROM _jz_remove)")
        by_flag = con.execute("SELECT flag, count(*) FROM _jz_remove GROUP BY flag").fetchall()
        con.execute("DROP TABLE temp._jz_remove")
    out = {f: int(c) for f, c in by_flag}
    out["total"] = int(n)
    return out
