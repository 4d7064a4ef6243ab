"""The CLI's one error handler says a core error's parameter as its flag (issue 13)."""

from __future__ import annotations

import pytest

from jingzhun.cli import error_text, flag
from jingzhun.errors import InputError


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("as_of", "--as-of"),
        ("half_life_days", "--half-life-days"),
        ("k", "--k"),
        ("batch_id", "--batch"),  # the override table
        ("include_resolved", "--all"),
    ],
)
def test_a_parameter_becomes_its_flag(param: str, expected: str) -> None:
    assert flag(param) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            InputError("as_of 'x' is not a timestamp", hint="use ISO 8601", param="as_of"),
            "--as-of 'x' is not a timestamp; use ISO 8601",
        ),
        # Only the first mention, and only the whole word: a value that spells the name stays.
        (
            InputError("as_of 'as_of' is not a timestamp", param="as_of"),
            "--as-of 'as_of' is not a timestamp",
        ),
        (InputError("since_as_of 'x' is odd", param="as_of"), "since_as_of 'x' is odd"),
        (
            InputError("until 'x' is not a timestamp", param="until"),
            "--until 'x' is not a timestamp",
        ),
        # Without a parameter the message is the message.
        (InputError("no store at x", hint="check --db"), "no store at x; check --db"),
    ],
)
def test_the_error_line_names_the_flag(error: InputError, expected: str) -> None:
    assert error_text(error) == expected
