"""Ingest 10M simulator events from Parquet and from CSV into a fresh store.

Targets: Parquet >= 1M rows/s, CSV >= 300k rows/s, peak memory < 2 GB, on 2 cores. The same
load (read, validate, dedupe) with plain pandas is measured in the same run for comparison.
The data: the first 10M event rows of a 1M-user simulation (dirty rows included), cached in
benchmarks/data/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import best, run, save, shop_files

ROWS = 10_000_000
TARGET = {"parquet_rows_per_s": 1_000_000, "csv_rows_per_s": 300_000, "peak_rss_mb": 2048}


def jingzhun_ingest(path: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="jz-bench-ingest-") as tmp:
        return run(
            f"""
            from jingzhun.workspace import Workspace
            ws = Workspace.open({str(Path(tmp) / "bench.duckdb")!r})
            r = ws.ingest("events", [{str(path)!r}])
            _out.update(r.to_dict())
            _out["rows_per_s"] = round(r.rows_read / r.seconds)
            ws.close()
            """
        )


# The storage floor: the same rows written into a table shaped like events, in one statement,
# with no validation, dedupe or quarantine.
PLAIN_COPY = """
import duckdb
con = duckdb.connect({db!r}, config={{"memory_limit": "1GB"}})
con.execute("SET enable_progress_bar = false; SET preserve_insertion_order = false; SET TimeZone = 'UTC'")
t = time.perf_counter()
con.execute(
    "CREATE TABLE events AS SELECT event_id, hash(event_id) AS event_key, event, user_id, anonymous_id, "
    "order_id, item_id, quantity::DOUBLE AS quantity, price, revenue, currency, channel, campaign_id, "
    "ts::TIMESTAMP AS ts, now()::TIMESTAMP AS received_at, "
    "CASE WHEN discount IS NOT NULL THEN json_object('discount', discount) END AS properties, 'b0' AS batch_id "
    "FROM read_parquet('{path}')"
)
con.close()
_out["rows_per_s"] = round({rows} / (time.perf_counter() - t))
"""


def plain_copy(path: Path, rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="jz-bench-copy-") as tmp:
        return run(PLAIN_COPY.format(db=str(Path(tmp) / "copy.duckdb"), path=str(path), rows=rows))


PANDAS = """
import numpy as np, pandas as pd
path = {path!r}
t = time.perf_counter()
if path.endswith(".parquet"):
    # Arrow-backed columns keep null apart from NaN, as the file does.
    df = pd.read_parquet(path, dtype_backend="pyarrow")
    ts = pd.to_datetime(df["ts"], utc=True, errors="coerce")
else:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    ts = pd.to_datetime(df["ts"], utc=True, errors="coerce", format="ISO8601")
known = {{"page_viewed", "product_viewed", "product_added", "product_removed", "checkout_started", "order_completed",
          "order_refunded", "signed_up", "identify", "message_sent", "email_delivered", "email_opened", "email_clicked",
          "campaign_converted"}}
bad = df["event"].isna() | ~df["event"].isin(known) | ts.isna()
now = pd.Timestamp.now(tz="UTC")
bad |= (ts > now + pd.Timedelta(hours=24)) | (ts < pd.Timestamp("1990-01-01", tz="UTC"))
for col in ("quantity", "price", "revenue"):
    given = df[col].notna().to_numpy(dtype=bool)
    x = pd.to_numeric(df[col], errors="coerce").astype("float64").to_numpy()
    bad |= given & ~(np.isfinite(x) & (x >= 0))
for col in ("event_id", "user_id", "anonymous_id", "order_id", "item_id"):
    s = df[col].astype("string")
    bad |= (s.str.len() > 256).fillna(False) | (s.str.strip() == "").fillna(False)
bad |= df["user_id"].isna() & df["anonymous_id"].isna()
bad |= df["event"].isin(["product_viewed", "product_added", "product_removed", "order_completed"]) & df["item_id"].isna()
bad |= df["event"].isin(["order_completed", "order_refunded"]) & df["order_id"].isna()
good = df[~bad]
dup = good["event_id"].duplicated(keep="first")
_out.update(rows_read=len(df), quarantined=int(bad.sum()), duplicates=int(dup.sum()), inserted=int((~dup).sum()))
_out["rows_per_s"] = round(len(df) / (time.perf_counter() - t))
"""


def main(rows: int = ROWS, repeat: int = 2) -> None:
    files = shop_files(rows)
    parquet, csv = files["events_parquet"], files["events_csv"]
    results = {
        "jingzhun_parquet": best([jingzhun_ingest(parquet) for _ in range(repeat)]),
        "jingzhun_csv": jingzhun_ingest(csv),
        "duckdb_plain_copy_parquet": plain_copy(parquet, rows),
        "pandas_parquet": run(PANDAS.format(path=str(parquet))),
        "pandas_csv": run(PANDAS.format(path=str(csv))),
    }
    jp, jc = results["jingzhun_parquet"], results["jingzhun_csv"]
    met = {
        "parquet_rows_per_s": jp["rows_per_s"] >= TARGET["parquet_rows_per_s"],
        "csv_rows_per_s": jc["rows_per_s"] >= TARGET["csv_rows_per_s"],
        "peak_rss_mb": max(jp["peak_rss_mb"], jc["peak_rss_mb"]) < TARGET["peak_rss_mb"],
        "same_counts_as_pandas": all(
            results[f"jingzhun_{f}"][k] == results[f"pandas_{f}"][k]
            for f in ("parquet", "csv")
            for k in ("quarantined", "duplicates", "inserted")
        ),
    }
    save(
        "ingest",
        {
            "workload": f"ingest the first {rows:,} events of a 1M-user simulation into a new store",
            "target": TARGET,
            "results": results,
            "met": met,
            "note": (
                "pandas reads, validates and dedupes in memory but writes nothing; jingzhun also stores "
                "the rows durably, quarantines and links identities. duckdb_plain_copy_parquet writes the "
                "same rows into an events-shaped table in one statement with no checks: the storage floor."
            ),
        },
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
