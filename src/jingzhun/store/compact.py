"""Rewrite a store file so that nothing deleted stays in it.

DuckDB marks the blocks of deleted rows free and writes over them later; until then they
hold what was deleted. After ``privacy erase`` or ``privacy purge`` the erased person's ids
and events are still in the file's bytes (``tests/privacy/test_privacy.py`` finds them).
:func:`compact` copies every table, view and constraint into a new file
(``COPY FROM DATABASE``) and puts it in the store's place in one rename; the old file's
blocks go back to the file system (which, like any file system, may keep them on disk until
reused — full-disk encryption covers that).

The copy runs on a connection of its own that may touch only the store, the new file and
their write-ahead logs and spill folder; it needs the store closed everywhere (a running
``jingzhun serve`` holds it).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from jingzhun.errors import ConflictError
from jingzhun.store.sql import lit
from jingzhun.store.store import _SEALED, check_store_path


def compact(path: str | Path, *, memory_limit: str = "1GB") -> dict[str, Any]:
    """Rewrite the store at ``path`` without free blocks; its size before and after.

    Raises
    ------
    ConflictError
        The store is open in another process.
    """
    path = check_store_path(path).resolve()
    new = path.with_name(path.name + ".compact")
    spill = path.with_name(path.name + ".compact.tmp")
    for leftover in (new, Path(f"{new}.wal")):
        leftover.unlink(missing_ok=True)  # an interrupted compaction's
    started = time.perf_counter()
    before = path.stat().st_size
    files = [f"{p}{s}" for p in (path, new) for s in ("", ".wal", ".wal.checkpoint")]
    spill.mkdir(exist_ok=True)
    con = duckdb.connect(config={**_SEALED, "memory_limit": memory_limit})
    try:
        con.execute("SET allowed_paths = ?", [files])
        con.execute("SET allowed_directories = ?", [[str(spill)]])
        con.execute(f"SET temp_directory = {lit(str(spill))}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            # Read-write first, so a write-ahead log left by a crash is folded in.
            con.execute(f"ATTACH {lit(str(path))} AS old")
        except duckdb.IOException as exc:
            raise ConflictError(
                f"{path} is open in another process: {str(exc).splitlines()[0]}",
                hint="stop jingzhun serve (or the other command) and run it again",
            ) from exc
        con.execute("CHECKPOINT old")
        con.execute(f"ATTACH {lit(str(new))} AS new")
        con.execute("COPY FROM DATABASE old TO new")
        con.execute("DETACH new")
        con.execute("DETACH old")
    except BaseException:
        con.close()
        new.unlink(missing_ok=True)
        Path(f"{new}.wal").unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    con.close()
    with open(new, "rb+") as fh:  # on disk before it takes the store's place
        os.fsync(fh.fileno())
    Path(f"{path}.wal").unlink(missing_ok=True)  # checkpointed above: empty if present
    os.replace(new, path)
    return {
        "bytes_before": before,
        "bytes_after": path.stat().st_size,
        "seconds": round(time.perf_counter() - started, 3),
    }


__all__ = ["compact"]
