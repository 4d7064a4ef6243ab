"""Domain errors.

Every error a user can cause is a :class:`JingzhunError` whose message is one line that names
the file, row, field or parameter at fault and says how to fix it. Each class carries the CLI
exit code and the HTTP status it maps to, so the CLI and the server translate errors in one
place each.

An error about one parameter also carries its name, as the core spells it, in
:attr:`JingzhunError.param` (``as_of``, ``half_life_days``), and its message names the
parameter in that spelling. A front end re-spells it in its own words: the CLI as its flag
(``--as-of``, see ``jingzhun.cli``), the HTTP server as the field of the request it came in
(``as_of``, or the path ``["query", "as_of"]`` of a validation error). The first mention of
``param`` in the message is the one a front end replaces.

Examples
--------
>>> err = InputError("as_of 'soon' is not a timestamp", hint="use ISO 8601", param="as_of")
>>> str(err), err.param, err.exit_code, err.http_status
("as_of 'soon' is not a timestamp; use ISO 8601", 'as_of', 2, 422)
"""

from __future__ import annotations

import re


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


class JingzhunError(Exception):
    """Base class: a failure while running (exit code 1, HTTP 500).

    Parameters
    ----------
    message : str
        What is wrong and where, on one line (line breaks become spaces).
    hint : str, optional
        How to fix it; shown after the message, separated by ``"; "``.
    param : str, optional
        The parameter at fault, as the core spells it (``as_of``): a Python identifier that
        the message names. Front ends translate it into their own spelling.
    """

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        if param is not None and not param.isidentifier():
            raise ValueError(f"param {param!r} must be a parameter name such as 'as_of'")
        # One line: line breaks become spaces; other spacing is kept (messages quote input,
        # and a column number must still point into the quoted text).
        self.message = _one_line(message)
        self.hint = _one_line(hint) if hint else None
        self.param = param
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InputError(JingzhunError):
    """Bad input or usage: a file, a row, a parameter (exit code 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class NotFoundError(InputError):
    """Something the user named does not exist (exit code 2, HTTP 404)."""

    http_status = 404


class ConflictError(InputError):
    """The store is busy or in a state that forbids the request (exit code 2, HTTP 409)."""

    http_status = 409


class StoreVersionError(InputError):
    """The store was written by a newer jingzhun, or is not a jingzhun store (exit code 2)."""

    http_status = 409
