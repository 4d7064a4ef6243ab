"""The shared number checks: finite() and bounded_int() (issue 12)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jingzhun.checks import MAX_DAYS, MAX_ROWS, MIN_DAYS, bounded_int, finite
from jingzhun.errors import InputError


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: finite(math.nan, "--x", lo=0), "--x must be a finite number at least 0, not nan"),
        (lambda: finite(math.inf, "--x"), "--x must be a finite number, not inf"),
        (lambda: finite(-math.inf, "--x", lo=0, hi=1), "--x must be a finite number between 0"),
        (lambda: finite(-1, "--x", lo=0), "--x must be at least 0, not -1"),
        (lambda: finite(0, "--x", lo=0, lo_open=True), "--x must be above 0, not 0"),
        (lambda: finite(2, "--x", lo=0, hi=1, lo_open=True), "--x must be above 0 and at most 1"),
        (lambda: finite(1e300, "--x", hi=1e6), "--x must be at most 1,000,000, not 1e+300"),
        (lambda: finite("3", "--x"), "--x must be a number, not '3'"),
        (lambda: finite(True, "--x"), "--x must be a number, not True"),
        (lambda: bounded_int(10**20, "--limit", lo=1, hi=100), "--limit must be between 1 and"),
        (lambda: bounded_int(10**5000, "--n", hi=5), "--n must be at most 5, not 2**16609 or more"),
        (lambda: bounded_int(-(10**20), "--n", lo=0), "--n must be at least 0, not -2**66 or less"),
        (lambda: bounded_int(2.5, "--n", lo=1), "--n must be a whole number at least 1, not 2.5"),
        (lambda: bounded_int(math.nan, "--n"), "--n must be a whole number, not nan"),
        (lambda: bounded_int(math.inf, "--n"), "--n must be a whole number, not inf"),
        (lambda: bounded_int(None, "--n"), "--n must be a whole number, not None"),
        (
            lambda: bounded_int(0, "--n", lo=1, hi=2**63 - 1),
            "--n must be between 1 and 9,223,372,036,854,775,807",
        ),
    ],
)
def test_messages_name_the_parameter_and_the_range(call, message: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.exit_code == 2


def test_values_in_range_come_back_typed() -> None:
    assert finite(3, "x", lo=0) == 3.0 and isinstance(finite(3, "x"), float)
    assert bounded_int(5.0, "n", lo=1) == 5 and isinstance(bounded_int(5.0, "n"), int)
    assert finite(0.0, "x", lo=0) == 0.0  # a closed bound is allowed
    assert MIN_DAYS == 1 / 24 and MAX_DAYS == 36_500 and MAX_ROWS == 10_000_000


@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
    st.one_of(st.none(), st.floats(-1e6, 1e6)),
    st.booleans(),
)
def test_finite_returns_a_number_in_range_or_raises_input_error(
    value: float, lo: float | None, lo_open: bool
) -> None:
    hi = None if lo is None else lo + 10
    try:
        got = finite(value, "x", lo=lo, hi=hi, lo_open=lo_open)
    except InputError as exc:
        assert str(exc).startswith("x must be ") and "\n" not in str(exc)
    else:
        assert math.isfinite(got)
        if lo is not None:
            assert (got > lo if lo_open else got >= lo) and got <= hi


@given(st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=5), st.none()))
def test_bounded_int_returns_an_int_in_range_or_raises_input_error(value: object) -> None:
    try:
        got = bounded_int(value, "n", lo=-5, hi=5)  # type: ignore[arg-type]
    except InputError as exc:
        assert str(exc).startswith("n must be ") and "\n" not in str(exc)
    else:
        assert isinstance(got, int) and -5 <= got <= 5
