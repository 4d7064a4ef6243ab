"""Domain errors.

Every error a user can cause is a :class:`JingzhunError` whose message is one line that names
the file, row, field or parameter at fault and says how to fix it. Each class carries the CLI
exit code and the HTTP status it maps to, so the CLI and the server translate errors in one
place each.
"""

from __future__ import annotations

import re


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


class JingzhunError(Exception):
    """Base class: a failure while running (exit code 1, HTTP 500)."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # One line: line breaks become spaces; other spacing is kept (messages quote input,
        # and a column number must still point into the quoted text).
        self.message = _one_line(message)
        self.hint = _one_line(hint) if hint else None
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
