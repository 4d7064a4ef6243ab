"""What other parts read of the campaign stage: members with their deliveries, unsubscribes.

The evaluation stage and the report call these instead of querying the campaign tables.
"""

from __future__ import annotations

from jingzhun.store.sql import Sql


def members_query() -> Sql:
    """A query of one campaign's members (one ``?``: its name): ``user_id``, ``arm``,
    ``variant``, ``segment``, ``score``, the delivery ``state`` and ``reason``, ``sent_at``."""
    return (
        "SELECT m.user_id, m.arm, m.variant, m.segment, m.score, m.assigned_at, d.state, "
        "d.reason, d.sent_at "
        "FROM campaign_members m LEFT JOIN deliveries d "
        "ON d.campaign = m.campaign AND d.user_id = m.user_id "
        "WHERE m.campaign = ?"
    )


def starts_query() -> Sql:
    """A query of when each member of one campaign (one ``?``: its name) joined it:
    ``user_id``, ``start`` (``assigned_at``)."""
    return "SELECT user_id, assigned_at AS start FROM campaign_members WHERE campaign = ?"


def treatment_starts_query() -> Sql:
    """:func:`starts_query` for the treatment arm only."""
    return (
        "SELECT user_id, assigned_at AS start FROM campaign_members "
        "WHERE campaign = ? AND arm = 'treatment'"
    )


def unsubscribes_query() -> Sql:
    """A query of the ``user_id`` of each user who unsubscribed through one campaign's link
    (one ``?``: its name)."""
    return (
        "SELECT DISTINCT user_id FROM consents "
        "WHERE status = 'REVOKED' AND source = 'unsubscribe:' || ?"
    )


__all__ = ["members_query", "starts_query", "treatment_starts_query", "unsubscribes_query"]
