"""The clock and the parsing of user-given times, on the ground floor (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jingzhun.contracts.time import parse_as_of, utcnow
from jingzhun.errors import InputError


def test_utcnow_is_naive_utc() -> None:
    now = utcnow()
    assert now.tzinfo is None
    assert abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-30", datetime(2026, 6, 30)),
        (" 2026-06-30T12:00:00 ", datetime(2026, 6, 30, 12)),
        ("2026-06-30T12:00:00Z", datetime(2026, 6, 30, 12)),
        ("2026-06-30T12:00:00+08:00", datetime(2026, 6, 30, 4)),
        ("2026-06-30 12:00:00.5-01:00", datetime(2026, 6, 30, 13, 0, 0, 500_000)),
    ],
)
def test_times_are_read_as_naive_utc(text: str, expected: datetime) -> None:
    assert parse_as_of(text) == expected


def test_an_error_names_the_parameter_as_the_core_spells_it() -> None:
    with pytest.raises(InputError) as info:
        parse_as_of("next tuesday")
    assert info.value.param == "as_of"
    assert info.value.message == "as_of 'next tuesday' is not a timestamp"
    assert "ISO 8601" in str(info.value)


def test_the_caller_names_the_parameter_a_time_came_in() -> None:
    with pytest.raises(InputError, match=r"^since 'last-june' is not a timestamp") as info:
        parse_as_of("last-june", param="since")
    assert info.value.param == "since"
