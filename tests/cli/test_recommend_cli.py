"""The recommend stage's command line, run as a real subprocess on real DuckDB files.

``recommend train|list|batch|show|session|evaluate`` on the simulated shop. Conventions
(DESIGN.md, "CLI conventions"): ``--json`` prints exactly one JSON object on stdout; exit codes
0 ok, 2 bad input; an error is one line on stderr starting with ``error:`` naming the option or
value at fault, and nothing is written (no row, no model file).

The shop is ingested, profiled and segmented once per module, in process (that is not what is
tested here); the successful commands run once, one after another, on a copy of that store;
every failing command gets a copy of its own.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from jingzhun.config import Settings
from jingzhun.store import Store
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import (
    Ran,
    copy_store,
    error_line,
    human,
    one_json,
    run,
    snapshot,
    sql,
)

K = 5
UNKNOWN = "nobody-at-all"
METRIC_KEYS = {
    "precision",
    "recall",
    "ndcg",
    "map",
    "hit_rate",
    "mrr",
    "coverage",
    "novelty",
    "fit_seconds",
    "recommend_seconds",
}
TRAIN_KEYS = {
    "model_id",
    "model",
    "params",
    "users",
    "items",
    "interactions",
    "fit_seconds",
    "segment_run",
    "as_of",
    "validation",
}
LOG_HEADER = "user\titem\trating\tts\n"
#: --sep '\t' as typed in a shell (a backslash and a t), and the columns of the log files.
LOG_COLUMNS = (
    *("--sep", "\\t", "--user-col", "user", "--item-col", "item"),
    *("--rating-col", "rating", "--time-col", "ts"),
)


# -- the stores --------------------------------------------------------------------------------


def planted_log(seed: int = 0) -> str:
    """40 users in two groups: each group's users take 8 of its own 10 items, plus one item of
    the other group (noise). Ratings 1-5, epoch-second times."""
    rng = np.random.default_rng(seed)
    lines = [LOG_HEADER]
    for u in range(40):
        own, other = ("a", "b") if u < 20 else ("b", "a")
        for j, i in enumerate(rng.choice(10, 8, replace=False)):
            lines.append(f"u{u}\t{own}{i}\t{rng.integers(1, 6)}\t{1_700_000_000 + u * 100 + j}\n")
        lines.append(f"u{u}\t{other}{rng.integers(10)}\t1\t{1_700_000_000 + u * 100 + 9}\n")
    return "".join(lines)


LOGS = {
    "log.tsv": planted_log(),
    "single_user.tsv": LOG_HEADER
    + "".join(f"u1\ti{i}\t1\t{1_700_000_000 + i}\n" for i in range(6)),
    "empty.tsv": LOG_HEADER,
    # every user has exactly one interaction: no split can hold anything out for a known user
    "one_each.tsv": LOG_HEADER
    + "".join(f"u{i}\ti{i % 7}\t1\t{1_700_000_000 + i}\n" for i in range(30)),
}


def write_logs(folder: Path) -> None:
    for name, text in LOGS.items():
        (folder / name).write_text(text, encoding="utf-8")


def models_of(db: Path) -> Path:
    """The folder beside the store where models were kept before the registry (issue 13)."""
    return db.with_name(db.name + ".models") / "recommend"


def stored_models(db: Path) -> list[str]:
    """The recommenders kept inside the store, with their fitted state."""
    return [
        m
        for (m,) in sql(
            db,
            "SELECT model_id FROM models WHERE kind = 'recommender' AND artefact IS NOT NULL "
            "ORDER BY 1",
        )
    ]


def copy_with_models(src: Path, folder: Path) -> Path:
    """A copy of the store and its model files (their paths are relative to the store)."""
    db = copy_store(src, folder)
    models = src.with_name(src.name + ".models")
    if models.exists():
        shutil.copytree(models, db.with_name(db.name + ".models"))
    return db


@pytest.fixture(scope="module")
def stores(shop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shop ingested, profiled and segmented; and the same with an item-kNN model."""
    folder = tmp_path_factory.mktemp("recommend_stores")
    settings = Settings()
    profiled = folder / "profiled" / "store.duckdb"
    profiled.parent.mkdir()
    with Workspace(Store.open(profiled, settings), settings) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
        ws.segment_run("kmeans", k=3, stability_resamples=0)
    trained = copy_store(profiled, folder / "trained")
    with Workspace(Store.open(trained, settings), settings) as ws:
        ws.recommend_train("itemknn")
    return {"profiled": profiled, "trained": trained}


@pytest.fixture(scope="module")
def session(
    stores: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    refusals: dict[str, Future[Refusal]],
) -> dict[str, Ran]:
    """The successful commands, one after another on one copy of the profiled store (the bad
    ones run meanwhile, in the background, on copies of their own)."""
    folder = tmp_path_factory.mktemp("recommend_session")
    db = copy_store(stores["profiled"], folder)
    write_logs(folder)
    ((user,),) = sql(
        db,
        "SELECT user_id FROM stitched_events WHERE event = 'order_completed' "
        "AND user_id IN (SELECT user_id FROM users) GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )
    (item1, item2) = [
        r[0]
        for r in sql(
            db,
            "SELECT item_id FROM events WHERE event = 'product_viewed' AND item_id IS NOT NULL "
            "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 2",
        )
    ]
    ran: dict[str, Ran] = {}

    def do(key: str, *args: str) -> None:
        ran[key] = run(folder, *args, db=db)

    def together(*jobs: tuple[str, ...]) -> None:
        """Commands that may run side by side: read-only ones (shared lock on the store), or
        ones that do not open the store at all."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda job: do(*job), jobs))

    with ThreadPoolExecutor(max_workers=1) as aside:
        # Evaluating a log file never opens the store: it runs beside the writes.
        on_the_side = aside.submit(
            lambda: [
                do(
                    "evaluate_file",
                    *("recommend", "evaluate", "--interactions", "log.tsv", *LOG_COLUMNS),
                    *("--split", "random-by-user:0.8", "--models", "pop,itemknn,als,ease"),
                    *("--budget", "2", "--json"),
                ),
                do(
                    "evaluate_file_human",
                    *("recommend", "evaluate", "--interactions", "log.tsv", *LOG_COLUMNS),
                    *("--split", "random-by-user:0.8", "--models", "pop,itemknn", "--budget", "1"),
                ),
            ]
        )
        do("train_itemknn", "recommend", "train", "--model", "itemknn", "--json")
        do("train_hybrid", "recommend", "train", "--json")
        do("batch_human", "recommend", "batch", "--k", "3")
        do("batch", "recommend", "batch", "--k", str(K), "--json")
        on_the_side.result()
    together(
        ("list", "recommend", "list", "--json"),
        ("list_human", "recommend", "list"),
        ("show", "recommend", "show", user, "--k", str(K), "--json"),
        ("show_zh", "recommend", "show", user, "--k", str(K), "--lang", "zh", "--json"),
        ("show_unknown", "recommend", "show", UNKNOWN, "--k", str(K), "--json"),
        ("show_human", "recommend", "show", user, "--k", str(K)),
        ("session", "recommend", "session", item1, item2, "--k", str(K), "--json"),
    )
    do(
        "evaluate",
        *("recommend", "evaluate", "--models", "pop,itemknn,ease", "--budget", "2"),
        *("--split", "leave-last-out", "--json"),
    )
    ran["db"] = Ran(0, str(db), "", folder)
    ran["user"] = Ran(0, user, "", folder)
    ran["items"] = Ran(0, f"{item1} {item2}", "", folder)
    return ran


def _db(session) -> Path:
    return Path(session["db"].stdout)


# -- recommend train / list ---------------------------------------------------------------------


def test_train_itemknn_json_is_one_object_and_saves_the_model(session) -> None:
    result = one_json(session["train_itemknn"])
    db = _db(session)
    assert set(result) == TRAIN_KEYS
    assert (result["model_id"], result["model"]) == ("itemknn-1", "itemknn")
    assert result["users"] > 0 and result["items"] > 0 and result["interactions"] > 0
    assert result["validation"] is None
    assert result["segment_run"] == "kmeans-1"
    # Saved inside the store (a store is one file), not beside it.
    assert "itemknn-1" in stored_models(db)
    assert not models_of(db).parent.exists()
    ((users, items),) = sql(
        db,
        "SELECT count(DISTINCT user_id), (SELECT count(*) FROM items) FROM stitched_events "
        "WHERE item_id IS NOT NULL AND user_id IS NOT NULL",
    )
    assert result["users"] <= users
    assert result["items"] >= items  # the whole catalog, touched or not


def test_train_default_is_the_hybrid_with_validation_weights(session) -> None:
    result = one_json(session["train_hybrid"])
    assert (result["model_id"], result["model"]) == ("hybrid-1", "hybrid")
    validation = result["validation"]
    assert isinstance(validation, dict)
    weights = validation["weights"]
    assert isinstance(weights, dict) and weights
    assert set(weights) == set(result["params"]["components"].split(","))
    assert all(w >= 0 for w in weights.values()) and any(w > 0 for w in weights.values())
    assert 0 <= validation["ndcg@10"] <= 1 and validation["users"] > 0


def test_list_json_has_both_models_and_only_the_latest_is_active(session) -> None:
    listed = one_json(session["list"])
    assert set(listed) == {"models"}
    rows = {r["model_id"]: r for r in listed["models"]}
    assert set(rows) == {"itemknn-1", "hybrid-1"}
    assert [r["model_id"] for r in listed["models"]] == ["hybrid-1", "itemknn-1"]  # newest first
    assert [r["model_id"] for r in listed["models"] if r["active"]] == ["hybrid-1"]
    trained = one_json(session["train_itemknn"])
    row = rows["itemknn-1"]
    assert (row["model"], row["users"], row["items"], row["interactions"]) == (
        "itemknn",
        trained["users"],
        trained["items"],
        trained["interactions"],
    )
    assert row["params"] == trained["params"]
    assert (
        rows["hybrid-1"]["metrics"]["validation"] == one_json(session["train_hybrid"])["validation"]
    )
    assert sql(_db(session), "SELECT model_id FROM recommend_models WHERE active") == [
        ("hybrid-1",)
    ]


def test_list_human_names_both_models_newest_first(session) -> None:
    text = human(session["list_human"])
    assert "hybrid-1" in text and "itemknn-1" in text
    assert text.index("hybrid-1") < text.index("itemknn-1")


# -- recommend batch -----------------------------------------------------------------------------


def test_batch_json_counts_what_it_wrote(session) -> None:
    result = one_json(session["batch"])
    db = _db(session)
    ((rows, users, models),) = sql(
        db, "SELECT count(*), count(DISTINCT user_id), list(DISTINCT model) FROM recommendations"
    )
    assert result == {"rows": rows, "users": users, "model": "hybrid-1"}
    assert models == ["hybrid-1"]
    assert rows == K * users > 0
    # every user of the users table has a list (the k=3 batch before was replaced)
    assert sql(
        db,
        "SELECT count(*) FROM users WHERE user_id NOT IN (SELECT user_id FROM recommendations)",
    ) == [(0,)]


def test_batch_lists_are_ranked_without_gaps_or_repeats(session) -> None:
    db = _db(session)
    assert sql(
        db,
        f"""
        SELECT count(*) FROM (
            SELECT user_id, list(rank ORDER BY rank) AS ranks, count(DISTINCT item_id) AS items
            FROM recommendations GROUP BY user_id
        ) WHERE ranks <> range(1, {K + 1}) OR items <> {K}
        """,
    ) == [(0,)]
    assert sql(
        db,
        "SELECT count(*) FROM recommendations r JOIN recommendations s USING (user_id, rank) "
        "WHERE r.item_id <> s.item_id OR r.score <> s.score",
    ) == [(0,)]
    # best first: scores never rise down a list
    assert sql(
        db,
        "SELECT count(*) FROM recommendations a JOIN recommendations b "
        "ON a.user_id = b.user_id AND b.rank = a.rank + 1 WHERE b.score > a.score + 1e-9",
    ) == [(0,)]


def test_batch_follows_the_default_rules(session) -> None:
    db = _db(session)
    # exclude_purchased: nothing the user already bought
    assert sql(
        db,
        "SELECT count(*) FROM recommendations r JOIN stitched_events e "
        "ON e.user_id = r.user_id AND e.item_id = r.item_id AND e.event = 'order_completed'",
    ) == [(0,)]
    # max_per_category = 3
    assert (
        sql(
            db,
            "SELECT max(n) FROM (SELECT r.user_id, i.category, count(*) AS n FROM recommendations r "
            "JOIN items i USING (item_id) WHERE i.category IS NOT NULL GROUP BY ALL)",
        )[0][0]
        <= 3
    )
    # only_available: active items, stock not <= 0
    assert sql(
        db,
        "SELECT count(*) FROM recommendations r JOIN items i USING (item_id) "
        "WHERE NOT i.active OR i.stock <= 0",
    ) == [(0,)]
    # the shop does have bought items, inactive and out-of-stock items for the rules to drop
    ((bought, unavailable),) = sql(
        db,
        "SELECT (SELECT count(*) FROM events WHERE event = 'order_completed'), "
        "(SELECT count(*) FROM items WHERE NOT active OR stock <= 0)",
    )
    assert bought > 0 and unavailable > 0


def test_batch_reasons_are_known_codes(session) -> None:
    reasons = [r[0] for r in sql(_db(session), "SELECT DISTINCT reason FROM recommendations")]
    pattern = re.compile(r"^(bought:.+|viewed:.+|interest:.+|segment:.+|popular)$")
    assert reasons and all(pattern.match(r) for r in reasons), reasons
    assert any(r.startswith("segment:") for r in reasons)  # users without history


def test_batch_human_says_what_it_wrote(session) -> None:
    text = human(session["batch_human"])
    assert re.search(r"Wrote [\d,]+ recommendations for [\d,]+ users \(hybrid-1\)", text), text


# -- recommend show --------------------------------------------------------------------------------


def test_show_json_for_a_known_user(session) -> None:
    shown = one_json(session["show"])
    user = session["user"].stdout
    assert shown["user_id"] == user and shown["model"] == "hybrid-1"
    assert shown["cold_start"] is False and shown["known_to_model"] is True
    items = shown["items"]
    assert [i["rank"] for i in items] == list(range(1, K + 1))
    assert len({i["item_id"] for i in items}) == K
    for item in items:
        assert isinstance(item["reason"], str) and item["reason"]
        assert isinstance(item["explanation"], str) and item["explanation"]
        assert item["explanation"] != item["reason"]
    bought = {
        r[0]
        for r in sql(
            _db(session),
            f"SELECT item_id FROM stitched_events WHERE user_id = '{user}' AND event = 'order_completed'",
        )
    }
    assert bought and not bought & {i["item_id"] for i in items}


def test_show_in_chinese(session) -> None:
    en, zh = one_json(session["show"]), one_json(session["show_zh"])
    assert [i["item_id"] for i in zh["items"]] == [i["item_id"] for i in en["items"]]
    assert [i["reason"] for i in zh["items"]] == [i["reason"] for i in en["items"]]
    for item in zh["items"]:
        assert re.search(r"[\u4e00-\u9fff]", item["explanation"]), item["explanation"]


def test_show_an_unknown_user_is_cold_start_not_an_error(session) -> None:
    shown = one_json(session["show_unknown"])
    assert shown["user_id"] == UNKNOWN
    assert shown["cold_start"] is True and shown["known_to_model"] is False
    assert shown["segment"] is None
    items = shown["items"]
    assert len(items) == K and len({i["item_id"] for i in items}) == K
    assert {i["reason"] for i in items} == {"popular"}
    assert {i["explanation"] for i in items} == {"popular right now"}


def test_show_human(session) -> None:
    text = human(session["show_human"])
    assert session["user"].stdout in text and "hybrid-1" in text
    for item in one_json(session["show"])["items"]:
        assert item["item_id"] in text


# -- recommend session -----------------------------------------------------------------------------


def test_session_json_leaves_the_session_items_out(session) -> None:
    result = one_json(session["session"])
    assert set(result) == {"items"}
    items = result["items"]
    ids = [i["item_id"] for i in items]
    assert len(ids) == K and len(set(ids)) == K
    assert not set(ids) & set(session["items"].stdout.split())
    assert [i["rank"] for i in items] == list(range(1, K + 1))
    assert all(i["reason"] for i in items)
    known = {r[0] for r in sql(_db(session), "SELECT item_id FROM items")}
    assert set(ids) <= known


# -- recommend evaluate --------------------------------------------------------------------------


def _check_evaluation(result: dict, models: set[str], split: str) -> None:
    assert {"k", "split", "models", "best"} <= set(result)
    assert (result["k"], result["split"]) == (10, split)
    assert set(result["models"]) == models
    for name, m in result["models"].items():
        assert set(m) >= METRIC_KEYS, name
        for key in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage"):
            assert 0 <= m[key] <= 1, (name, key)
        assert m["novelty"] >= 0 and m["fit_seconds"] >= 0 and m["recommend_seconds"] >= 0
    ndcg = {n: m["ndcg"] for n, m in result["models"].items()}
    assert result["best"] == max(ndcg, key=ndcg.get)


def test_evaluate_the_store_and_keep_the_result(session) -> None:
    result = one_json(session["evaluate"])
    _check_evaluation(result, {"popularity", "itemknn", "ease"}, "leave-last-out")
    rows = sql(_db(session), "SELECT source, split, k, best, result FROM recommend_evaluations")
    assert len(rows) == 1  # evaluating a log file does not write to the store
    source, split, k, best, stored = rows[0]
    assert (source, split, k, best) == ("store", "leave-last-out", 10, result["best"])
    assert json.loads(stored) == result


def test_evaluate_a_tab_separated_log(session) -> None:
    result = one_json(session["evaluate_file"])
    _check_evaluation(result, {"popularity", "itemknn", "als", "ease"}, "random-by-user:0.8")
    assert result["log"]["users"] == 40 and result["log"]["items"] == 20
    assert result["log"]["interactions"] == len(LOGS["log.tsv"].splitlines()) - 1
    models = result["models"]
    # the planted groups: personal models beat popularity
    assert models["itemknn"]["ndcg"] > models["popularity"]["ndcg"]
    assert result["best"] != "popularity"


def test_evaluate_human(session) -> None:
    text = human(session["evaluate_file_human"])
    assert "random-by-user:0.8" in text and "popularity" in text and "itemknn" in text
    assert "Best by nDCG@10" in text


# -- bad input -----------------------------------------------------------------------------------

EVAL = ("recommend", "evaluate", "--interactions")
#: The log's columns without --time-col.
NO_TIME = ("--sep", "\\t", "--user-col", "user", "--item-col", "item")
BAD = [
    # (id, store, args, needles in the error line)
    (
        "train-unknown-model",
        "trained",
        ("recommend", "train", "--model", "nosuch", "--json"),
        ("'nosuch'", "als", "itemknn"),
    ),
    (
        "train-unknown-param",
        "trained",
        ("recommend", "train", "--model", "als", "--param", "nosuch=1"),
        ("'nosuch'", "factors"),
    ),
    (
        "train-param-out-of-range",
        "trained",
        ("recommend", "train", "--model", "als", "--param", "factors=-3"),
        ("als: factors must be between 1 and 1,024, not -3",),
    ),
    (
        "train-param-without-value",
        "trained",
        ("recommend", "train", "--param", "factors", "--json"),
        ("--param 'factors'",),
    ),
    ("batch-k-0", "trained", ("recommend", "batch", "--k", "0", "--json"), ("--k 0",)),
    (
        "show-without-model",
        "profiled",
        ("recommend", "show", "u00000004", "--json"),
        ("no trained recommendation model", "jingzhun recommend train"),
    ),
    (
        "evaluate-missing-file",
        "profiled",
        (*EVAL, "missing.csv", *LOG_COLUMNS, "--json"),
        ("missing.csv",),
    ),
    (
        "evaluate-unknown-split",
        "profiled",
        (*EVAL, "log.tsv", *LOG_COLUMNS, "--split", "bogus:0.5"),
        ("'bogus:0.5'", "random-by-user", "leave-last-out", "temporal-global"),
    ),
    (
        "evaluate-ratio-above-1",
        "profiled",
        (*EVAL, "log.tsv", *LOG_COLUMNS, "--split", "random-by-user:1.5"),
        ("'random-by-user:1.5'",),
    ),
    (
        "evaluate-single-user",
        "profiled",
        (*EVAL, "single_user.tsv", *LOG_COLUMNS, "--json"),
        ("1 user",),
    ),
    ("evaluate-empty-log", "profiled", (*EVAL, "empty.tsv", *LOG_COLUMNS, "--json"), ("empty",)),
    (
        "evaluate-unknown-column",
        "profiled",
        (*EVAL, "log.tsv", "--sep", "\\t", "--user-col", "nosuch", "--item-col", "item"),
        ("--user-col 'nosuch'", "user, item, rating, ts"),
    ),
    (
        "evaluate-content-without-features",
        "profiled",
        (*EVAL, "log.tsv", *LOG_COLUMNS, "--models", "content"),
        ("content", "--item-features"),
    ),
    (
        "evaluate-temporal-without-time",
        "profiled",
        (*EVAL, "log.tsv", *NO_TIME, "--split", "temporal-global:0.5"),
        ("--split temporal-global", "--time-col"),
    ),
    (
        "evaluate-nothing-held-out-leave-last-out",
        "profiled",
        (*EVAL, "one_each.tsv", *LOG_COLUMNS, "--split", "leave-last-out", "--json"),
        ("--split leave-last-out", "no test user"),
    ),
    (
        "evaluate-nothing-held-out-random",
        "profiled",
        (*EVAL, "one_each.tsv", *LOG_COLUMNS, "--split", "random-by-user:0.5", "--json"),
        ("--split random-by-user:0.5", "no test user"),
    ),
    # Numbers (issue 12): NaN, infinite, negative or huge values are refused, one line each,
    # naming the option and the allowed range; nothing is trained or written.
    *(
        (
            f"train-hybrid-weight-{weight}",
            "trained",
            ("recommend", "train", "--model", "hybrid", "--param", f"weights=als:{weight}"),
            (f"hybrid: weight of als must be {allowed}",),
        )
        # nan was accepted and made active, then recommended nothing; so was 1e300 (the
        # float32 blend overflowed to inf)
        for weight, allowed in (
            ("nan", "a finite number between 0 and 1,000,000, not nan"),
            ("-1", "between 0 and 1,000,000, not -1"),
            ("1e300", "between 0 and 1,000,000, not 1e+300"),
        )
    ),
    (
        "train-whole-number-param-1.5",  # was read as 1, without a word
        "trained",
        ("recommend", "train", "--model", "als", "--param", "factors=1.5"),
        ("als: factors must be a whole number between 1 and 1,024, not 1.5",),
    ),
    (
        "train-component-param-nan",
        "trained",
        (
            *("recommend", "train", "--model", "hybrid"),
            *("--param", 'component_params={"als": {"alpha": NaN}}'),
        ),
        ("als: alpha must be a finite number between 0 and 1,000,000, not nan",),
    ),
    (
        "evaluate-seed-negative",  # numpy refused it: a ValueError traceback
        "profiled",
        (*EVAL, "log.tsv", *LOG_COLUMNS, "--models", "pop", "--seed", "-1"),
        ("--seed must be between 0 and 4,294,967,295, not -1",),
    ),
    (
        "evaluate-k-huge",
        "profiled",
        (*EVAL, "log.tsv", *LOG_COLUMNS, "--models", "pop", "--k", "100000000000000000000"),
        ("--k 100000000000000000000", "between 1 and 1000"),
    ),
    (
        "evaluate-budget-huge",
        "profiled",
        (*EVAL, "log.tsv", *LOG_COLUMNS, "--models", "pop", "--budget", "100000000000000000000"),
        ("--budget must be between 1 and 1,000, not 2**66 or more",),
    ),
    *(
        (
            f"evaluate-min-rating-{value}",  # no item was relevant: a misleading error
            "profiled",
            (*EVAL, "log.tsv", *LOG_COLUMNS, "--models", "pop", "--min-rating", value),
            (f"--min-rating must be a finite number, not {value}",),
        )
        for value in ("nan", "inf")
    ),
    (
        "show-k-huge",
        "trained",
        ("recommend", "show", "u00000004", "--k", "100000000000000000000"),
        ("--k 100000000000000000000", "between 1 and 1000"),
    ),
]
BAD_IDS = [case[0] for case in BAD]


Refusal = tuple[Ran, dict[str, int], dict[str, int], list[str], list[str]]


@pytest.fixture(scope="module")
def refusals(
    stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Refusal]]]:
    """Every bad command on a copy of its store, one at a time in the background (beside the
    session's commands): (result, row counts before, after, model files before, after)."""
    base = tmp_path_factory.mktemp("recommend_refused")

    def one(i: int) -> Refusal:
        _, store, args, _ = BAD[i]
        folder = base / f"job{i}"
        db = copy_with_models(stores[store], folder)
        write_logs(folder)
        before, files = snapshot(db), stored_models(db)
        res = run(folder, *args, db=db)
        return res, before, snapshot(db), files, stored_models(db)

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield {case: pool.submit(one, i) for i, case in enumerate(BAD_IDS)}


@pytest.fixture(scope="module")
def refused(refusals: dict[str, Future[Refusal]]) -> dict[str, Refusal]:
    return {case: future.result() for case, future in refusals.items()}


@pytest.mark.parametrize(("case", "needles"), [(i, n) for i, _, _, n in BAD], ids=BAD_IDS)
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(
    refused, case: str, needles: tuple[str, ...]
) -> None:
    res, before, after, files, files_after = refused[case]
    error_line(res, *needles)
    assert after == before
    assert files_after == files


def test_the_stores_of_the_bad_cases_are_what_they_claim(stores: dict[str, Path]) -> None:
    assert stored_models(stores["trained"]) == ["itemknn-1"]
    assert stored_models(stores["profiled"]) == []
    assert sql(stores["profiled"], "SELECT count(*) FROM recommend_models") == [(0,)]
