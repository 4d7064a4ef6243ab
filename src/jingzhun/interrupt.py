"""Ctrl-C for the command line: remember that it came, then raise KeyboardInterrupt.

DuckDB checks for signals while a query runs; it answers Python's KeyboardInterrupt by
cancelling the query and raising ``RuntimeError: Query interrupted`` in its place — which the
code around it (a file reader, a transaction) may turn into some other error. With the flag the
command line reports whatever surfaces after Ctrl-C as the interruption it is (exit 130), not as
a traceback or a bogus "check the file". A SIGINT the parent ignores (``nohup``, a background
job) stays ignored. This module imports nothing: the console script (``jingzhun.__main__``)
installs the handler before it imports the rest of jingzhun (a second of imports a Ctrl-C may
land in).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_INTERRUPTED = threading.Event()
_ROLLED_BACK = threading.Event()


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def catch() -> bool:
    """Install the handler in the main thread unless SIGINT is ignored or handled by someone
    else; True when it is installed (now or before)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGINT)
    if current is _on_interrupt:
        return True
    if current is not signal.default_int_handler:
        return False
    _INTERRUPTED.clear()
    _ROLLED_BACK.clear()
    signal.signal(signal.SIGINT, _on_interrupt)
    return True


def release() -> None:
    """Put Python's own handler back (main() called in a process that goes on: a test)."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is _on_interrupt:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted() -> bool:
    return _INTERRUPTED.is_set()


def note_rollback() -> None:
    """A store transaction was rolled back because of the interruption (Store.transaction)."""
    if _INTERRUPTED.is_set():
        _ROLLED_BACK.set()


def message() -> str:
    """The one line the command line prints after Ctrl-C, saying only what happened."""
    if _ROLLED_BACK.is_set():
        return "interrupted; the batch in progress was rolled back, nothing of it was stored"
    return "interrupted"
