"""The response model (world.py), on the ground truth of the shared simulated shop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.errors import InputError
from jingzhun.synth import REFERENCE_MESSAGE, Message, World
from jingzhun.synth.world import (
    CATEGORY_NAMES,
    RESPONSE_WINDOW_DAYS,
    convert_rate,
    natural_probability,
)


@pytest.fixture(scope="module")
def world(shop) -> World:
    return World.load(shop.dir)


@pytest.fixture(scope="module")
def truth(world: World) -> pd.DataFrame:
    return world.truth


def test_load_reads_the_truth_of_every_user(world: World, shop) -> None:
    assert len(world.truth) == shop.data.users.num_rows
    assert list(world.truth["user_id"]) == shop.data.users["user_id"].to_pylist()


def test_load_without_truth_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="no ground truth"):
        World.load(tmp_path)


def test_truth_lacking_a_required_column_is_an_input_error(truth: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="open_rate"):
        World(truth.drop(columns=["open_rate"]))


def test_truth_lacking_preferences_is_an_input_error(truth: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="pref_"):
        World(truth.drop(columns=[f"pref_{c}" for c in CATEGORY_NAMES]))


@pytest.mark.parametrize(
    "message", [REFERENCE_MESSAGE, Message(), Message("beauty", 0.2), Message("electronics", 0.5)]
)
def test_probabilities_are_probabilities_and_uplift_is_their_difference(
    world: World, truth: pd.DataFrame, message: Message
) -> None:
    probs = world.probabilities(truth["user_id"], message)
    assert list(probs.columns) == ["user_id", "p_control", "p_treated", "uplift"]
    assert list(probs["user_id"]) == list(truth["user_id"])
    for col in ("p_control", "p_treated"):
        assert probs[col].between(0.0, 1.0).all()
    np.testing.assert_array_equal(
        probs["uplift"].to_numpy(), (probs["p_treated"] - probs["p_control"]).to_numpy()
    )
    dead = ~truth["alive"].to_numpy()
    assert dead.sum() > 0
    assert (probs["p_control"].to_numpy()[dead] == 0).all()
    alive = ~dead
    assert (probs["p_control"].to_numpy()[alive] > 0).all()
    dogs = truth["sleeping_dog"].to_numpy()
    assert dogs.sum() > 0
    assert (probs["uplift"].to_numpy()[dogs] <= 0).all()
    np.testing.assert_allclose(
        probs["p_treated"].to_numpy()[dogs], probs["p_control"].to_numpy()[dogs] / 2
    )
    assert (probs["uplift"].to_numpy()[~dogs] >= 0).all()


def test_reference_message_reproduces_the_ground_truth(world: World, truth: pd.DataFrame) -> None:
    probs = world.probabilities(truth["user_id"], REFERENCE_MESSAGE)
    np.testing.assert_allclose(probs["p_control"], truth["p_control"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs["p_treated"], truth["p_treated"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs["uplift"], truth["uplift"], rtol=0, atol=1e-12)


def test_campaign_truth_follows_the_world_for_users_alive_at_the_end(
    world: World, truth: pd.DataFrame, shop
) -> None:
    camp = pq.read_table(shop.dir / "truth" / "campaigns.parquet").to_pandas()
    category = camp["campaign_id"].iloc[0].split("_", 2)[2]
    probs = world.probabilities(camp["user_id"], Message(category, 0.15))
    alive = truth.set_index("user_id")["alive"].reindex(camp["user_id"]).to_numpy()
    assert alive.sum() > 100
    for col in ("p_control", "p_treated", "uplift"):
        np.testing.assert_allclose(
            probs[col].to_numpy()[alive], camp[col].to_numpy()[alive], rtol=0, atol=1e-12
        )


def test_probabilities_grow_with_the_window(world: World, truth: pd.DataFrame) -> None:
    ids = truth["user_id"][truth["alive"]]
    short = world.probabilities(ids, Message(), days=7)
    long = world.probabilities(ids, Message(), days=60)
    assert (long["p_control"].to_numpy() > short["p_control"].to_numpy()).all()
    default = world.probabilities(ids, Message())
    np.testing.assert_allclose(
        default["p_control"],
        natural_probability(
            truth["purchase_rate"][truth["alive"]].to_numpy(),
            np.ones(len(ids), bool),
            RESPONSE_WINDOW_DAYS,
        ),
    )


def test_a_discount_raises_the_treated_probability_of_the_price_sensitive(
    world: World, truth: pd.DataFrame
) -> None:
    sensitive = truth[(truth["price_sensitivity"] > 0.5) & ~truth["sleeping_dog"]]
    assert len(sensitive) > 100
    plain = world.probabilities(sensitive["user_id"], Message("grocery", 0.0))
    cheap = world.probabilities(sensitive["user_id"], Message("grocery", 0.3))
    np.testing.assert_array_equal(plain["p_control"], cheap["p_control"])  # no effect untreated
    # Where the conversion rate is not already capped at 1, the discount strictly helps.
    uncapped = (
        convert_rate(
            sensitive["convert_rate"].to_numpy(),
            sensitive["price_sensitivity"].to_numpy(),
            sensitive["pref_grocery"].to_numpy(),
            0.3,
        )
        < 1
    )
    assert uncapped.sum() > 100
    assert (cheap["p_treated"].to_numpy()[uncapped] > plain["p_treated"].to_numpy()[uncapped]).all()
    # And it helps the sensitive more than the insensitive, relative to no discount.
    insensitive = truth[(truth["price_sensitivity"] < 0.2) & ~truth["sleeping_dog"]]
    gain_s = (cheap["uplift"] / plain["uplift"]).mean()
    gain_i = (
        world.probabilities(insensitive["user_id"], Message("grocery", 0.3))["uplift"]
        / world.probabilities(insensitive["user_id"], Message("grocery", 0.0))["uplift"]
    ).mean()
    assert gain_s > gain_i > 1.0


def test_a_message_about_a_loved_category_converts_better(
    world: World, truth: pd.DataFrame
) -> None:
    fans = truth[(truth["pref_books"] > 0.5) & ~truth["sleeping_dog"]]
    assert len(fans) > 10
    books = world.probabilities(fans["user_id"], Message("books", 0.1))
    generic = world.probabilities(fans["user_id"], Message(None, 0.1))
    assert (books["uplift"].to_numpy() > generic["uplift"].to_numpy()).all()


def test_respond_is_deterministic_for_a_seed(world: World, truth: pd.DataFrame) -> None:
    ids = truth["user_id"].to_numpy()
    treated = np.arange(len(ids)) % 2 == 0
    message = Message("beauty", 0.2)
    a = world.respond(ids, treated=treated, message=message, seed=11)
    b = world.respond(ids, treated=treated, message=message, seed=11)
    c = world.respond(ids, treated=treated, message=message, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["opened", "clicked", "converted"]].equals(c[["opened", "clicked", "converted"]])
    assert list(a.columns) == [
        "user_id",
        "treated",
        "p_control",
        "p_treated",
        "uplift",
        "opened",
        "clicked",
        "converted",
        "revenue",
    ]


def test_untreated_users_never_open_or_click(world: World, truth: pd.DataFrame) -> None:
    ids = truth["user_id"].to_numpy()
    treated = np.arange(len(ids)) % 3 == 0
    out = world.respond(ids, treated=treated, message=Message("home", 0.1), seed=5)
    assert not out.loc[~treated, "opened"].any()
    assert not out.loc[~treated, "clicked"].any()
    assert (out["clicked"] <= out["opened"]).all()
    assert out.loc[treated, "opened"].any()
    assert (out.loc[~out["converted"], "revenue"] == 0).all()
    assert (out.loc[out["converted"], "revenue"] > 0).all()


def _three_se(p: np.ndarray) -> float:
    return 3.0 * float(np.sqrt((p * (1 - p)).sum())) / len(p)


def test_conversions_match_the_true_probabilities_on_average(
    world: World, truth: pd.DataFrame
) -> None:
    # Each user ten times over: 30,000 independent draws per arm.
    ids = np.tile(truth["user_id"].to_numpy(), 10)
    message = Message("apparel", 0.2)
    treated = world.respond(ids, treated=np.ones(len(ids), bool), message=message, seed=1)
    p1 = treated["p_treated"].to_numpy()
    assert abs(treated["converted"].mean() - p1.mean()) <= _three_se(p1)
    control = world.respond(ids, treated=np.zeros(len(ids), bool), message=message, seed=2)
    p0 = control["p_control"].to_numpy()
    assert abs(control["converted"].mean() - p0.mean()) <= _three_se(p0)
    # Opens follow the users' open rates.
    o = np.tile(truth["open_rate"].to_numpy(), 10)
    assert abs(treated["opened"].mean() - o.mean()) <= _three_se(o)
    # The effect is visible: treated users convert more than the held-out ones.
    assert treated["converted"].mean() > control["converted"].mean()


def test_sleeping_dogs_convert_less_when_treated(world: World, truth: pd.DataFrame) -> None:
    dogs = truth[truth["sleeping_dog"] & truth["alive"]]["user_id"].to_numpy()
    assert len(dogs) > 20
    ids = np.tile(dogs, 200)
    treated = world.respond(ids, treated=np.ones(len(ids), bool), message=Message(), seed=3)
    control = world.respond(ids, treated=np.zeros(len(ids), bool), message=Message(), seed=4)
    p1, p0 = treated["p_treated"].to_numpy(), control["p_control"].to_numpy()
    np.testing.assert_allclose(p1, p0 / 2)
    assert abs(treated["converted"].mean() - p1.mean()) <= _three_se(p1)
    assert treated["converted"].mean() < control["converted"].mean()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"category": "gadgets"}, "gadgets"),
        ({"category": "Beauty"}, "Beauty"),
        ({"discount": 1.0}, "discount"),
        ({"discount": -0.1}, "discount"),
        ({"discount": float("nan")}, "discount"),
    ],
)
def test_bad_messages_are_input_errors(kwargs: dict, named: str) -> None:
    with pytest.raises(InputError, match=named):
        Message(**kwargs)


def test_valid_messages(world: World) -> None:
    for category in CATEGORY_NAMES:
        Message(category, 0.0)
    Message(None, 0.999)


def test_unknown_users_are_input_errors(world: World, truth: pd.DataFrame) -> None:
    known = truth["user_id"].iloc[0]
    with pytest.raises(InputError, match="u99999999"):
        world.probabilities([known, "u99999999"], Message())
    with pytest.raises(InputError, match="nobody"):
        world.respond(["nobody"], treated=[True], message=Message(), seed=0)


def test_treated_flags_must_match_the_users(world: World, truth: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="treated"):
        world.respond(truth["user_id"].iloc[:3], treated=[True, False], message=Message(), seed=0)
