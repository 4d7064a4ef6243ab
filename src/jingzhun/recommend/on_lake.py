"""``recommend batch`` on Spark (issue 19): a model trained on one machine, applied to every
user of a lake where the users are.

The model comes from a store's registry (:func:`prepare`): the registry stays the one place
that says which models exist and which is active, so a lake holds data, not a second copy of
the models. Its ``.npz`` bytes (no pickle) are broadcast to the workers with the lake's
catalog and the rules; each partition builds a :class:`~jingzhun.recommend.serving.Ranker`
from them and ranks its users with ``mapInPandas``, by the code :meth:`Recommend.batch` runs
on one machine — the same interactions (one Ibis definition), the same blocks of users, the
same rules and reasons — and ``recommendations`` is written to the lake in one rename.

The blocks are the single machine's: the users in id order, :data:`BATCH_USERS` at a time.
Models that score with dense float32 products (ALS, BPR) round a user's scores in the last
bits according to the other users of the block; equal blocks keep the rows equal, not only
close. Each block is ranked inside one partition; a partition streams its blocks in order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from jingzhun.contracts.results import Result
from jingzhun.contracts.time import utcnow
from jingzhun.recommend import serving
from jingzhun.recommend.interactions import catalog, interactions_expr
from jingzhun.recommend.models import load
from jingzhun.recommend.rules import Rules
from jingzhun.store import Registry
from jingzhun.store import lake_frames as lf

if TYPE_CHECKING:
    from jingzhun.config import Settings
    from jingzhun.store.lake import Lake

#: The rows each partition writes (``recommendations``' columns and Spark types).
SCHEMA = (
    "user_id string, rank int, item_id string, score double, model string, reason string, "
    "created_at timestamp"
)


@dataclass(frozen=True)
class Prepared:
    """A batch checked before Spark starts: the recommender read from a store's registry, and
    the list length."""

    model_id: str
    artefact: bytes  # the registry's .npz bytes
    segments: pd.DataFrame | None  # the members of its segment run (user_id, segment)
    k: int


def prepare(
    store_path: str | Path, settings: Settings, ref: str | None = None, k: int | None = None
) -> Prepared:
    """The active (or a named) recommender of the store at ``store_path`` (opened read-only
    and closed again) and ``k`` (default ``[recommend] k``); refused, naming what is wrong,
    when there is no such model, it is of another kind, its bytes do not load, or ``k`` is
    out of range."""
    chosen = settings.recommend.k if k is None else k
    serving._check_k(chosen)
    with lf.model_store(store_path, settings) as store:
        record = serving.resolve_model(store, ref)
        blob = Registry(store).artefact(record.model_id)
        members = serving.model_segments(store, record)
    load(blob)  # a damaged model is refused here, not in every worker
    segments = None if members is None else members[["user_id", "segment"]]
    return Prepared(record.model_id, blob, segments, chosen)


@dataclass
class LakeBatch(Result):
    """What a batch on a lake wrote: ``recommendations`` rows, the users they cover."""

    rows: int
    users: int
    model: str
    as_of: datetime
    seconds: float


def batch_on_lake(lake: Lake, settings: Settings, source: Prepared) -> LakeBatch:
    """Top ``k`` for every user of the lake (its users table and interaction history), by
    ``source``'s model after the business rules, written as the lake's ``recommendations``
    (replaced in one rename): the rows :meth:`Recommend.batch` writes to a store."""
    from pyspark.sql import functions as F

    started = time.perf_counter()
    lf.driver_python(lake.session)
    at = lf.latest_as_of(lake)
    block = serving.BATCH_USERS
    expr = interactions_expr(lake, settings, at)
    # Read twice (whose users, then their rows): computed once, the events scanned once.
    history = lf.frame(lake, expr.select("user_id", "item_id", "weight", "purchased")).persist()
    known = lf.frame(lake, lake.table("users").select("user_id"))
    users, count = lf.numbered(
        history.select("user_id").union(known).distinct(), [F.col("user_id").asc()]
    )
    users = users.withColumn("_block", F.floor((F.col("_row") - 1) / block).cast("long"))
    if source.segments is not None:
        members = lake.session.createDataFrame(
            source.segments.astype({"user_id": object, "segment": object}),
            "user_id string, segment string",
        )
        users = users.join(members, "user_id", "left")
    else:
        users = users.withColumn("segment", F.lit(None).cast("string"))
    rows = users.join(history, "user_id", "left")
    blocks = max(1, math.ceil(count / block))
    parts = min(blocks, max(2, 4 * lake.session.sparkContext.defaultParallelism))
    shipped = lf.broadcast(
        lake.session,
        _Shipped(
            source.model_id,
            source.artefact,
            catalog(lake),
            Rules.from_settings(settings.recommend),
            source.k,
            source.segments is not None,
            utcnow().replace(microsecond=0),
        ),
    )

    def rank(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        yield from _rank_partition(shipped.value, batches)

    ranked = (
        rows.repartition(parts, "_block")
        .sortWithinPartitions("_block", "user_id")
        .mapInPandas(rank, SCHEMA)
    )
    try:
        written = lake.write_frame("recommendations", ranked)
    finally:
        history.unpersist()
    covered = int(lake.table("recommendations").user_id.nunique().execute())
    return LakeBatch(written, covered, source.model_id, at, time.perf_counter() - started)


@dataclass(frozen=True)
class _Shipped:
    """What every partition needs, broadcast once."""

    model_id: str
    artefact: bytes
    items: pd.DataFrame
    rules: Rules
    k: int
    segmented: bool
    created_at: datetime


def _rank_partition(shipped: _Shipped, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Rank a partition's rows (one per user and history item, sorted by block and user):
    each block whole, in order, as its last row arrives."""
    ranker = serving.Ranker(shipped.model_id, load(shipped.artefact), shipped.rules, shipped.items)
    pending: list[pd.DataFrame] = []  # the rows of the block not yet whole
    for batch in batches:
        if batch.empty:
            continue
        done = (batch["_block"] != batch["_block"].iloc[-1]).to_numpy()
        if done.any():  # sorted by block: what precedes the last block is whole
            yield from _rank_blocks(ranker, shipped, pd.concat([*pending, batch[done]]))
            pending = []
        pending.append(batch[~done])
    if pending:
        yield from _rank_blocks(ranker, shipped, pd.concat(pending))


def _rank_blocks(
    ranker: serving.Ranker, shipped: _Shipped, rows: pd.DataFrame
) -> Iterator[pd.DataFrame]:
    for _, block in rows.groupby("_block", sort=True):
        first = block.drop_duplicates("user_id")
        users = first["user_id"].to_numpy(dtype=object)
        groups = None
        if shipped.segmented:
            segment = first["segment"].astype(object)
            groups = segment.where(segment.notna(), None).to_numpy(dtype=object)
        history = block[block["item_id"].notna()]
        matrix, purchased = ranker.matrices(history, list(users))
        yield ranker.batch_rows(
            users, matrix, purchased, shipped.k, groups, shipped.created_at
        ).astype({"rank": np.int32})


__all__ = ["LakeBatch", "Prepared", "batch_on_lake", "prepare"]
