"""Privacy: the vault's cost at ingest, and a person's export and erasure on a large store.

Targets (issue 18): a users file ingested with the vault within 20% of the same ingest without
encryption; ``privacy erase`` of one user ≤ 5 s and ``privacy export`` ≤ 2 s on a store of 10M
events or more.

- **users ingest**: the 1M users (with email, phone, name, address) of the 1M-user shop,
  written once to Parquet from that store, ingested into a new store: as jingzhun does it (each
  person's values sealed as one AES-GCM record, email and phone blind-indexed by HMAC-SHA256
  in DuckDB), and — the baseline in the same run — the same ingest with the vault's cipher
  and index replaced by identity, which is what storing the values in plain text cost. Best of ``--runs`` each, in fresh processes.
- **re-ingest**: the same file again into the encrypted store (every stored value decrypted
  to compare, none changed).
- **seal**: the 1M-user store as an older jingzhun wrote it (plaintext personal data) opened
  with a key for the first time: every row encrypted in place.
- **export / erase**: on that store (1M users, 23.1M events), for ``--people`` of the users
  with the most events, each in a fresh ``jingzhun`` process (``seconds`` is the command's own
  work, ``process_seconds`` includes the interpreter's start).

Reproduce: ``cd benchmarks && ../.venv/bin/python bench_privacy.py`` (needs the 1M-user store of
``bench_campaign.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, best, copy_store, remove_store, run, save
from jingzhun.store.vault import key_file

KEY = "YmVuY2htYXJrLW9ubHktbWFzdGVyLWtleS0zMi1ieXQ"
ENV = {"JINGZHUN_MASTER_KEY": KEY}
TARGET = {"vault_overhead": 0.20, "erase_s": 5.0, "export_s": 2.0}
SOURCE = DATA / "campaign-shop-1000000" / "store.duckdb"
FOLDER = DATA / "privacy-1m"

_PLAIN_VAULT = """
from jingzhun.store import vault as _v
_v.Vault.seal_people = lambda self, plain, ads: list(plain)
_v.Vault.open_people = lambda self, sealed, ads, users: list(sealed)
_v.Vault.encrypt = lambda self, values, users, field: list(values)
_v.Vault.decrypt = lambda self, tokens, users, field: list(tokens)
# the index is the value itself (the parameters the real one takes, unused)
_v._token_sql = lambda field, value, odd: f"CASE WHEN $jz_ipad = $jz_opad THEN NULL ELSE {value} END"
"""


def users_file() -> Path:
    path = FOLDER / "users.parquet"
    if path.exists():
        return path
    FOLDER.mkdir(parents=True, exist_ok=True)
    # The shop's personal data is sealed in its vault: open every record (its own key).
    made = run(
        f"""
        import pyarrow.parquet as pq
        from jingzhun.store import Store
        from jingzhun.store.sql import Sql
        from jingzhun.store.vault import opened_people, vault_for
        with Store.open({str(SOURCE)!r}, read_only=True) as store:
            opened_people(store.con, vault_for(store), Sql("SELECT user_id, sealed FROM pii"),
                          Sql("_people"))
            # (the store's connection has no file access: pyarrow writes the file)
            people = store.con.sql('''SELECT u.user_id, u.created_at, u.gender, u.birth_year,
                                             u.city, u.region, u.signup_channel, p.email,
                                             p.phone, p.name, p.address
                                      FROM users u LEFT JOIN _people p USING (user_id)''')
            pq.write_table(people.to_arrow_table(), {str(path)!r})
            _out["users"] = store.count("users")
            _out["with_email"] = store.scalar("SELECT count(email) FROM _people")
        """,
        env=_own_key(SOURCE),
    )
    if not made["with_email"]:  # the vault would have nothing to seal: no benchmark
        path.unlink()
        raise SystemExit(f"error: no user of {SOURCE} has an email address to seal")
    return path


def _own_key(db: Path) -> dict[str, str]:
    """The environment for commands on a copy of the shop: its own key file opens its vault
    (the benchmark's ``KEY`` is for the stores it makes)."""
    return {"JINGZHUN_MASTER_KEY": key_file(db).read_text(encoding="utf-8").strip()}


def ingest(path: Path, *, plain: bool, again: bool = False) -> dict[str, Any]:
    db = FOLDER / ("plain.duckdb" if plain else "vault.duckdb")
    if not again:
        remove_store(db)
    return run(
        (_PLAIN_VAULT if plain else "")
        + textwrap.dedent(
            f"""
        import time
        from jingzhun.workspace import Workspace
        with Workspace.open({str(db)!r}) as ws:
            t = time.perf_counter()
            r = ws.ingest.files("users", [{str(path)!r}])
            _out["batch_seconds"] = round(time.perf_counter() - t, 3)
            _out.update(inserted=r.inserted, updated=r.updated, rows=r.rows_read)
        """
        ),
        env=ENV,
    )


def sealed_store() -> tuple[Path, dict[str, Any]]:
    """A copy of the shop for export and erasure, its vault opened once. The shop is made by
    this jingzhun, so it is sealed already: ``seal_seconds`` is opening the vault, not the
    one-time sealing of a store an older jingzhun wrote in plain text."""
    db = FOLDER / "store.duckdb"
    copy_store(SOURCE, db)
    sealed = run(
        f"""
        import time
        from jingzhun.store import Store
        from jingzhun.store.vault import vault_for
        with Store.open({str(db)!r}) as store:
            _out["sealed_before"] = store.scalar("SELECT count(sealed) FROM pii")
            t = time.perf_counter()
            vault_for(store, create=True)
            _out["seal_seconds"] = round(time.perf_counter() - t, 3)
            _out["pii_rows"] = store.count("pii")
            _out["events"] = store.count("events")
        """,
        env=_own_key(db),
        timeout=3600,
    )
    return db, sealed


def people(db: Path, n: int) -> list[str]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT e.user_id FROM events e JOIN pii USING (user_id) "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?",
                [n],
            ).fetchall()
        ]


def command(db: Path, *args: str) -> dict[str, Any]:
    return run(
        f"""
        import subprocess, sys, time
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "jingzhun", "--db", {str(db)!r}, *{list(args)!r}],
                           capture_output=True, text=True)
        _out["command_seconds"] = round(time.perf_counter() - t, 3)
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        _out["stdout_bytes"] = len(p.stdout)
        """,
        env=_own_key(db),
    )


def main(argv: list[str] | None = None) -> None:
    """Run it; ``argv`` the options (none from ``make bench``: the full run)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--people", type=int, default=3)
    args = ap.parse_args(argv or [])
    if not SOURCE.exists():
        raise SystemExit(f"error: {SOURCE} is missing; run bench_campaign.py first")
    os.environ.update(ENV)
    path = users_file()
    vault = best([ingest(path, plain=False) for _ in range(args.runs)], "batch_seconds")
    plain = best([ingest(path, plain=True) for _ in range(args.runs)], "batch_seconds")
    again = ingest(path, plain=False, again=True)
    overhead = vault["batch_seconds"] / plain["batch_seconds"] - 1
    db, sealed = sealed_store()
    chosen = people(db, args.people)
    exports = [command(db, "privacy", "export", u) for u in chosen]
    erases = [command(db, "privacy", "erase", u, "--json") for u in chosen]
    export_s = statistics.median(r["command_seconds"] for r in exports)
    erase_s = statistics.median(r["command_seconds"] for r in erases)
    save(
        "privacy",
        {
            "workload": "1M users with personal data; export and erase on the 1M-user shop "
            f"({sealed['events']:,} events)",
            "target": TARGET,
            "results": {
                "users_ingest_vault": vault,
                "users_ingest_plaintext_baseline": plain,
                "users_reingest_vault_unchanged": again,
                "vault_overhead": round(overhead, 3),
                "open_sealed_store": sealed,
                "export_command_seconds": [r["command_seconds"] for r in exports],
                "export_bytes": [r["stdout_bytes"] for r in exports],
                "erase_command_seconds": [r["command_seconds"] for r in erases],
            },
            "met": {
                "vault_overhead": overhead <= TARGET["vault_overhead"],
                "erase_s": erase_s <= TARGET["erase_s"],
                "export_s": export_s <= TARGET["export_s"],
            },
            "note": "command_seconds: the whole `jingzhun privacy ...` process, interpreter "
            "start included. The baseline replaces only the vault's cipher and index calls "
            "by identity; everything else of the ingest is the same code.",
        },
    )


if __name__ == "__main__":
    main(sys.argv[1:])
