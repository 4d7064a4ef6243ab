"""Checks on the numbers a user supplies: the one definition every stage uses.

A weight, threshold, horizon, window or count that comes from the command line, a settings
file or the Python API goes through :func:`finite` or :func:`bounded_int` in the core
function that takes it, so the CLI, the API and notebooks get the same one-line
:class:`~jingzhun.errors.InputError` naming the parameter. This module sits on the ground
floor: it imports nothing but :mod:`jingzhun.errors`.

Examples
--------
>>> finite(0.5, "--threshold", lo=0, hi=1)
0.5
>>> bounded_int(10, "--limit", lo=1, hi=1_000_000)
10
"""

from __future__ import annotations

import math
import numbers
import reprlib
from typing import Any

from jingzhun.errors import InputError


def _short_repr() -> reprlib.Repr:
    """A repr that stops two levels deep and cuts long text (Python 3.11 takes no arguments)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 2, 40, 40, 40
    return short


_REPR = _short_repr()

__all__ = ["MAX_DAYS", "MAX_ROWS", "MIN_DAYS", "bounded_int", "finite", "shown"]

#: The shortest window, half-life or horizon, in days: one hour.
MIN_DAYS = 1 / 24
#: The longest window, half-life or horizon, in days: a hundred years.
MAX_DAYS = 36_500.0
#: The most rows a user may ask one command to list or return (a --limit, --top, --events).
MAX_ROWS = 10_000_000


def _show(value: float) -> str:
    """A bound as a user would write it: 1000000 as 1,000,000, 0.5 as 0.5."""
    if isinstance(value, int):
        return f"{value:,}"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:g}"


def _range(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    """The allowed range in words (``between 1 and 100``), or "" with no bounds."""
    if lo is not None and hi is not None:
        if lo_open:
            return f"above {_show(lo)} and at most {_show(hi)}"
        return f"between {_show(lo)} and {_show(hi)}"
    if lo is not None:
        return f"above {_show(lo)}" if lo_open else f"at least {_show(lo)}"
    if hi is not None:
        return f"at most {_show(hi)}"
    return ""


def _within(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    """`` between 1 and 100`` with its leading space, or "" with no bounds."""
    text = _range(lo, hi, lo_open)
    return f" {text}" if text else ""


def shown(value: Any) -> str:
    """``value`` as an error message quotes it: short, one line, never failing.

    Whole numbers past 10^15 show only their size (``2**66 or more``: ``str()`` of a huge int
    is slow, and an error past 4,300 digits); text is quoted and cut at 40 characters.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:  # reprlib: two levels deep at most (a value may nest 5,000 levels)
            text = _REPR.repr(value)
        except Exception:  # a repr that fails or recurses: say what it is
            text = f"a {type(value).__name__}"
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int) and abs(value) >= 10**15:
        size = value.bit_length() - 1
        return f"-2**{size} or less" if value < 0 else f"2**{size} or more"
    return _show(value)


def finite(
    value: float,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hint: str | None = None,
) -> float:
    """Return ``value`` as a float if it is finite and within ``[lo, hi]``.

    Parameters
    ----------
    value : float
        The number to check (an int is accepted and returned as a float; a bool is not).
    name : str
        How the user spells the parameter (``--threshold``, ``[profile] half_life_days``,
        ``threshold``): the message names it.
    lo, hi : float, optional
        Inclusive bounds; ``None`` leaves that side open.
    lo_open : bool
        Exclude ``lo`` itself (``value > lo``), for quantities that must be positive.
    hint : str, optional
        Added to the error (after the message's own "must be …").

    Raises
    ------
    InputError
        If ``value`` is not a number, is NaN or infinite, or lies outside the bounds:
        ``--threshold must be a finite number above 0 and at most 1,000, not inf``.
    """
    within = _within(lo, hi, lo_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number{within}, not {shown(value)}", hint=hint)
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number{within}, not {number!r}", hint=hint)
    below = lo is not None and (number <= lo if lo_open else number < lo)
    above = hi is not None and number > hi
    if below or above:
        raise InputError(f"{name} must be{within}, not {shown(number)}", hint=hint)
    return number


def bounded_int(
    value: int,
    name: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    hint: str | None = None,
) -> int:
    """Return ``value`` as an int if it is a whole number within ``[lo, hi]``.

    A float with a whole value (``5.0``) is accepted; ``5.5``, NaN, infinities and bools are
    not.

    Raises
    ------
    InputError
        If ``value`` is not a whole number or lies outside the bounds:
        ``--limit must be between 1 and 10,000,000, not 2**66 or more``.
    """
    within = _within(lo, hi)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a whole number{within}, not {shown(value)}", hint=hint)
    if not isinstance(value, numbers.Integral):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer():
            raise InputError(f"{name} must be a whole number{within}, not {number!r}", hint=hint)
        value = int(number)
    whole = int(value)
    if (lo is not None and whole < lo) or (hi is not None and whole > hi):
        raise InputError(f"{name} must be{within}, not {shown(whole)}", hint=hint)
    return whole
