"""Time as the store keeps it: naive UTC, to the microsecond.

Every timestamp jingzhun writes is UTC without a zone (DuckDB's session zone is UTC), so the
clock and the parser of user-given times live here, once, for every stage.

Examples
--------
>>> parse_as_of("2026-06-30T12:00:00+08:00")
datetime.datetime(2026, 6, 30, 4, 0)
>>> parse_as_of("2026-06-30")
datetime.datetime(2026, 6, 30, 0, 0)
"""

from __future__ import annotations

from datetime import UTC, datetime

from jingzhun.errors import InputError

__all__ = ["parse_as_of", "utcnow"]


def utcnow() -> datetime:
    """Current UTC time, naive (the store holds naive UTC timestamps), to the microsecond."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_as_of(value: str, *, param: str = "as_of") -> datetime:
    """A user-given time as naive UTC.

    Parameters
    ----------
    value : str
        ISO 8601: a date (``2026-06-30``), a date and time, with or without a zone (``Z``,
        ``+08:00``). A time without a zone is taken as UTC.
    param : str, default "as_of"
        The parameter ``value`` came in, as the core spells it (``as_of``, ``since`` …); an
        error names it and carries it as :attr:`~jingzhun.errors.JingzhunError.param`, so
        the CLI can say ``--since`` and the API ``since``.

    Returns
    -------
    datetime
        The time in UTC, without a zone.

    Raises
    ------
    InputError
        ``value`` is not an ISO 8601 timestamp.
    """
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(
            f"{param} {value!r} is not a timestamp",
            hint="use ISO 8601, e.g. 2026-06-30 or 2026-06-30T12:00:00Z",
            param=param,
        ) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
