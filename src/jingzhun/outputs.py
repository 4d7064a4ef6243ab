"""Files a user names for output (``--out``): checked before any work, written atomically.

Every command that writes a file the user named (``quarantine export``, ``report``,
``profile export``, ``segment export``, ``synth`` …) goes through this module, so one set of
rules holds everywhere:

* :func:`check_output_path` refuses, in one line naming the option, a path that is the store,
  its write-ahead log (``<store>.wal``) or lies in its model folder (``<store>.models/``)
  (compared after resolving symbolic links and ``..``, and by inode for hard links), or any
  other DuckDB database; a folder;
  an existing file that is not a regular file (a device such as ``/dev/full``, a FIFO, a
  socket, or a link to one); a read-only file; a name too long for the file system; a path
  under something that is not a folder, or (unless the command creates folders) in a folder
  that does not exist.
* :func:`atomic_write` writes through a new temporary file in the target's folder (created
  exclusively, so an existing file or link under that name is never followed) and renames it
  over the target only when the writer finished: a failure leaves the old file as it was and
  no temporary file behind.

This module sits on the ground floor: it imports nothing but :mod:`jingzhun.errors`.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> target = check_output_path(folder / "rows.jsonl", store_path=folder / "shop.duckdb")
>>> with atomic_write(target, "w") as fh:
...     _ = fh.write("{}\\n")
>>> target.read_text()
'{}\\n'
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from jingzhun.errors import InputError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "atomic_write",
    "check_output_dir",
    "check_output_path",
]

#: The longest file or folder name (one path component) Linux file systems take, in bytes.
MAX_NAME_BYTES = 255
#: The longest path the kernel takes (PATH_MAX, 4096 with the closing NUL), in bytes.
MAX_PATH_BYTES = 4095
#: What a DuckDB database file holds at bytes 8-11: no output replaces one, whichever store.
DUCKDB_MAGIC = b"DUCK"

_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _short(path: object, limit: int = 80) -> str:
    """A path as an error quotes it: a 5,000-character name is cut, not repeated."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _check_length(path: str, flag: str) -> None:
    raw = os.fsencode(path)
    if len(raw) > MAX_PATH_BYTES:
        raise InputError(
            f"{flag} {_short(path)}: file name too long ({len(raw):,} bytes; "
            f"the limit is {MAX_PATH_BYTES:,})",
            hint=f"give {flag} a shorter path",
        )
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > MAX_NAME_BYTES:
        raise InputError(
            f"{flag} {_short(path)}: file name too long (a name of {len(longest):,} bytes; "
            f"the limit is {MAX_NAME_BYTES} per file or folder name)",
            hint=f"give {flag} a shorter name",
        )


def _stat(path: Path, flag: str, shown: str) -> os.stat_result | None:
    """``os.stat`` (following links); None when nothing is there yet."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return None  # reported by the parent check, which names the culprit
        raise InputError(
            f"{flag} {shown}: {exc.strerror or exc}", hint=f"give {flag} another path"
        ) from None


def _store_paths(store_path: str | os.PathLike[str] | None) -> dict[Path, str]:
    """The store's own files, resolved, with what each is."""
    if store_path is None or str(store_path) in ("", ":memory:") or "\0" in str(store_path):
        return {}  # no store file (a bad --db is the store's own error to report)
    real = Path(os.path.realpath(store_path))
    return {
        real: "the store itself",
        real.with_name(real.name + ".wal"): "the store's write-ahead log",
    }


def _named(path: str | os.PathLike[str], flag: str, kind: str) -> tuple[str, str]:
    """``path`` as text and as shown in messages; refused when empty, with NUL, or too long."""
    raw = os.fspath(path)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    shown = _short(text)
    if not text:
        raise InputError(f"{flag} is empty", hint=f"name the {kind} to write")
    if "\0" in text:
        raise InputError(f"{flag} {shown!r} contains a NUL character", hint=f"name a real {kind}")
    _check_length(text, flag)
    return text, shown


def check_output_path(
    path: str | os.PathLike[str],
    *,
    flag: str = "--out",
    store_path: str | os.PathLike[str] | None = None,
    create_parents: bool = False,
    what: str = "the file",
) -> Path:
    """Check that ``path`` may be written as a new or replaced regular file; return it resolved.

    Parameters
    ----------
    path : str or path-like
        The file the user asked for.
    flag : str
        The option's name, quoted in every error (``--out``).
    store_path : str or path-like, optional
        The store the command works on: its file, its ``.wal`` and its ``.models`` folder are
        refused, whichever spelling or link leads there.
    create_parents : bool
        Whether missing folders on the way are fine (:func:`atomic_write` creates them);
        by default the file's folder must exist.
    what : str
        What is written, for the message when its folder is wrong (``the report``).

    Returns
    -------
    Path
        The absolute path with links and ``..`` resolved: write there (a link to a regular
        file is followed, so the file it points to is replaced, not the link).

    Raises
    ------
    InputError
        One line naming ``flag``, the path and why, with a hint.
    """
    text, shown = _named(path, flag, "file")
    if text.endswith(("/", os.sep)) or Path(text).name in ("", ".", ".."):
        raise InputError(f"{flag} {shown} is a folder", hint="name the file to write in it")
    real = Path(os.path.realpath(text))
    _check_store(real, store_path, flag, shown)

    st = _stat(real, flag, shown)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{flag} {shown} is a folder", hint="name the file to write in it")
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise InputError(
                f"{flag} {shown} is {kind}",
                hint="name a regular file (a new one, or one to replace)",
            )
        if not os.access(real, os.W_OK):
            raise InputError(f"{flag} {shown} is read-only", hint="name a file you may write")
        if _is_duckdb(real):
            raise InputError(
                f"{flag} {shown} is a DuckDB database (a store)",
                hint="name another file: writing there would destroy the store",
            )
    _check_parent(real, flag, shown, what=what, create=create_parents)
    return real


def _is_duckdb(path: Path) -> bool:
    """Whether ``path`` (a regular file) starts like a DuckDB database: ``DUCK`` at byte 8."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head[8:12] == DUCKDB_MAGIC


def check_output_dir(
    path: str | os.PathLike[str],
    *,
    flag: str = "--out",
    store_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Check that ``path`` is a folder, or may be created as one; return it resolved.

    For commands that write several files into a folder the user names (``synth``,
    ``demo``); each file is then checked with :func:`check_output_path` and written with
    :func:`atomic_write`. The store's file, its ``.wal`` and its ``.models`` folder (or a
    folder inside it) are refused.
    """
    text, shown = _named(path, flag, "folder")
    real = Path(os.path.realpath(text))
    _check_store(real, store_path, flag, shown)
    st = _stat(real, flag, shown)
    if st is None:
        _check_parent(real, flag, shown)
    elif not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{flag} {shown} is not a folder", hint="name a folder (or a new one)")
    return real


def _check_store(
    real: Path, store_path: str | os.PathLike[str] | None, flag: str, shown: str
) -> None:
    """Refuse the store's file, its WAL and its model folder, however spelled or linked."""
    store = _store_paths(store_path)
    for own, what in store.items():
        if real == own or (own.exists() and _same(real, own)):
            raise InputError(
                f"{flag} {shown} is {what} ({_short(own)})",
                hint="name another file: writing there would destroy the store",
            )
    if store:
        real_store = next(iter(store))
        models = real_store.with_name(real_store.name + ".models")
        if real == models or real.is_relative_to(models):
            where = "is" if real == models else "is inside"
            raise InputError(
                f"{flag} {shown} {where} the store's model folder ({_short(models)})",
                hint="name a path outside it",
            )


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_parent(
    real: Path, flag: str, shown: str, *, what: str = "the file", create: bool = True
) -> None:
    """The nearest existing ancestor must be a folder this process may write in; unless
    ``create``, it must be the parent itself."""
    folder = real.parent
    cannot = f"{flag} {shown}: cannot write {what} there"
    while True:
        try:
            st = folder.stat()
            break
        except FileNotFoundError:
            if not create:
                raise InputError(
                    f"{cannot}: folder {_short(folder)} does not exist",
                    hint="create it first, or name a file in an existing folder",
                ) from None
            folder = folder.parent
        except OSError as exc:
            if exc.errno != errno.ENOTDIR:
                raise InputError(
                    f"{cannot}: {exc.strerror or exc}", hint=f"give {flag} another path"
                ) from None
            folder = folder.parent
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(
            f"{cannot}: {_short(folder)} is not a folder", hint="name a file in a folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"{cannot}: no permission to write in {_short(folder)}",
            hint="name a file in a folder you may write",
        )


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "wb", *, flag: str = "--out", **open_args: Any
) -> Iterator[IO[Any]]:
    """Yield a file open for writing; on success it replaces ``path`` in one rename.

    ``path`` should come from :func:`check_output_path`. Missing parent folders are created
    (and removed again when the write fails). The temporary file is created exclusively with
    the default permissions (the umask applies), in the target's folder so the rename stays on
    one file system. An ``OSError`` while writing becomes an :class:`InputError` naming
    ``flag``; any failure removes the temporary file and leaves ``path`` untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    shown = _short(target)
    created = _make_parents(target.parent, flag, shown)
    tmp: Path | None = None
    try:
        fd, tmp = _create_temp(target.parent)
        with os.fdopen(fd, mode, **open_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InputError(
            f"cannot write {flag} {shown}: {exc.strerror or exc}", hint=f"check {flag}"
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:
                    break
    # created folders stay once the file is in place


def _make_parents(folder: Path, flag: str, shown: str) -> list[Path]:
    """Create ``folder`` and its missing ancestors; return those created, outermost first."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    missing.reverse()
    created: list[Path] = []
    for d in missing:
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            for done in reversed(created):
                done.rmdir()
            raise InputError(
                f"cannot write {flag} {shown}: cannot create {_short(d)}: {exc.strerror or exc}",
                hint=f"check {flag}",
            ) from exc
        created.append(d)
    return created


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new, empty file in ``folder``: ``O_EXCL`` (never an existing file, never via a link)."""
    for _ in range(100):
        tmp = folder / f".jingzhun-{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))
