"""The shop simulator: determinism, validation, event shape, dirty-row truth, realism, PII,
the past campaign and the planted anomalies.

Most tests read the Parquet files of the shared session ``shop`` (3,000 users, seed 3), so they
also cover ``ShopData.write``; a few run small simulations of their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingzhun.errors import InputError
from jingzhun.synth import SynthConfig, simulate
from jingzhun.synth.personas import PERSONA_NAMES, PERSONAS

TABLES = (
    "events",
    "users",
    "items",
    "campaigns",
    "truth_users",
    "truth_dirty",
    "truth_campaigns",
    "truth_anomalies",
)
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


def _str(series: pd.Series) -> pd.Series:
    """A dictionary-encoded (categorical) column as plain object strings, nulls kept."""
    return series.astype(object).where(series.notna(), None)


@dataclass
class Loaded:
    """The shared shop read back from its Parquet files."""

    config: SynthConfig
    events_arrow: pa.Table
    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    campaigns: pd.DataFrame
    truth_users: pd.DataFrame
    dirty: pd.DataFrame
    truth_campaigns: pd.DataFrame
    anomalies: pd.DataFrame

    @property
    def dirty_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.events), dtype=bool)
        mask[self.dirty["row"].to_numpy()] = True
        return mask

    @property
    def clean(self) -> pd.DataFrame:
        return self.events[~self.dirty_mask]

    def rows(self, detail: str) -> np.ndarray:
        return self.dirty.loc[self.dirty["detail"] == detail, "row"].to_numpy()


@pytest.fixture(scope="module")
def loaded(shop) -> Loaded:
    events_arrow = pq.read_table(shop.file("events"))
    events = events_arrow.to_pandas()
    for col in ("event", "currency", "channel", "campaign_id"):
        events[col] = _str(events[col])
    truth_users = pq.read_table(shop.dir / "truth" / "users.parquet").to_pandas()
    truth_users["persona"] = _str(truth_users["persona"])
    return Loaded(
        config=shop.data.config,
        events_arrow=events_arrow,
        events=events,
        users=pq.read_table(shop.file("users")).to_pandas(),
        items=pq.read_table(shop.file("items")).to_pandas(),
        campaigns=pq.read_table(shop.file("campaigns")).to_pandas(),
        truth_users=truth_users,
        dirty=pq.read_table(shop.dir / "truth" / "dirty_rows.parquet").to_pandas(),
        truth_campaigns=pq.read_table(shop.dir / "truth" / "campaigns.parquet").to_pandas(),
        anomalies=pq.read_table(shop.dir / "truth" / "anomalies.parquet").to_pandas(),
    )


def same_table(a: pa.Table, b: pa.Table) -> bool:
    """``a.equals(b)``, except that NaN equals NaN (the dirty rows hold NaN prices on purpose)."""
    if not a.schema.equals(b.schema) or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a[name].combine_chunks(), b[name].combine_chunks()
        if pa.types.is_floating(x.type):
            if not x.is_null().equals(y.is_null()):
                return False
            xs, ys = x.fill_null(0.0).to_numpy(), y.fill_null(0.0).to_numpy()
            if not np.array_equal(xs, ys, equal_nan=True):
                return False
        elif not x.equals(y):
            return False
    return True


def _window(config: SynthConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the simulated window: ``config.end`` is its last day, inclusive."""
    end = pd.Timestamp(config.end, tz="UTC") + pd.Timedelta(days=1)
    return end - pd.Timedelta(days=config.days), end


# -- writing -------------------------------------------------------------------------------------


def test_write_puts_every_table_and_the_truth_in_place(shop) -> None:
    for name in ("events", "users", "items", "campaigns"):
        assert same_table(pq.read_table(shop.file(name)), getattr(shop.data, name)), name
    for name, file in [
        ("truth_users", "users"),
        ("truth_dirty", "dirty_rows"),
        ("truth_campaigns", "campaigns"),
        ("truth_anomalies", "anomalies"),
    ]:
        assert same_table(
            pq.read_table(shop.dir / "truth" / f"{file}.parquet"), getattr(shop.data, name)
        ), name
    assert not list(shop.dir.rglob("*.tmp"))
    meta = json.loads((shop.dir / "truth" / "config.json").read_text(encoding="utf-8"))
    assert meta["config"]["users"] == 3000 and meta["config"]["seed"] == 3
    assert meta["config"]["end"] == shop.data.config.end.isoformat()
    assert meta["stats"]["events"] == shop.data.events.num_rows
    assert meta["stats"]["dirty_event_rows"] == shop.data.truth_dirty.num_rows
    assert (shop.dir / "truth" / "world.json").exists()


# -- determinism ---------------------------------------------------------------------------------


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_equal_configs_give_equal_tables(seed: int) -> None:
    a = simulate(SynthConfig(users=500, seed=seed))
    b = simulate(SynthConfig(users=500, seed=seed))
    for name in TABLES:
        assert same_table(getattr(a, name), getattr(b, name)), name
    assert a.stats == b.stats


def test_another_seed_gives_different_events() -> None:
    a = simulate(SynthConfig(users=500, seed=1))
    b = simulate(SynthConfig(users=500, seed=2))
    assert not same_table(a.events, b.events)
    assert not same_table(a.truth_users, b.truth_users)
    assert a.events["event_id"][:50] != b.events["event_id"][:50]


def test_same_table_sees_a_single_changed_value() -> None:
    data = simulate(SynthConfig(users=300, seed=1))
    events = data.events
    assert pc.any(pc.is_nan(events["price"])).as_py()  # NaNs present, yet a table equals itself
    assert same_table(events, events.take(pa.array(np.arange(events.num_rows))))
    price = events["price"].combine_chunks().to_numpy(zero_copy_only=False).copy()
    price[np.flatnonzero(price > 0)[0]] += 0.01
    changed = events.set_column(
        events.column_names.index("price"),
        "price",
        pa.array(
            price, mask=events["price"].combine_chunks().is_null().to_numpy(zero_copy_only=False)
        ),
    )
    assert not same_table(events, changed)


def test_simulate_reports_its_steps() -> None:
    steps: list[str] = []
    simulate(SynthConfig(users=300, seed=1), step=steps.append)
    assert steps[0] == "catalogue" and "events" in steps and "dirty rows" in steps
    assert len(steps) == len(set(steps))


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"users": 9}, r"--users 9"),
        ({"users": 0}, r"--users 0"),
        ({"users": 100, "items": 9}, r"--items 9"),
        ({"days": 59}, r"--days 59"),
        ({"dirty_rate": -0.01}, r"dirty[ _-]rate"),
        ({"dirty_rate": 0.5}, r"dirty[ _-]rate"),
        ({"seed": -1}, r"--seed -1"),
    ],
)
def test_bad_config_raises_input_error_naming_the_parameter(kwargs: dict, named: str) -> None:
    with pytest.raises(InputError, match=named):
        SynthConfig(**kwargs)


def test_smallest_valid_config_is_accepted_and_items_default_from_users() -> None:
    SynthConfig(users=10, items=12, days=60, dirty_rate=0.0, seed=0)
    SynthConfig(dirty_rate=0.2)
    assert SynthConfig(users=100).n_items == 200
    assert SynthConfig(users=5000).n_items == 500
    assert SynthConfig(users=10**7).n_items == 50_000
    assert SynthConfig(users=5000, items=42).n_items == 42


@pytest.mark.parametrize("items", [10, 11])
def test_fewer_items_than_categories_are_refused(items: int) -> None:
    with pytest.raises(InputError, match=r"--items .* too small.*one per category"):
        SynthConfig(users=300, items=items, seed=1)


def test_one_item_per_category_can_be_simulated() -> None:
    data = simulate(SynthConfig(users=300, items=12, seed=1))
    assert data.items.num_rows == 12
    assert len(set(data.items["category"].to_pylist())) == 12


def test_tiny_shop_simulates() -> None:
    data = simulate(SynthConfig(users=10, days=60, seed=4))
    assert data.users.num_rows == 10 and data.truth_users.num_rows == 10
    assert data.events.num_rows > 0


# -- events: shape -------------------------------------------------------------------------------


def test_events_are_in_time_order_apart_from_future_timestamps(loaded: Loaded) -> None:
    ts = loaded.events["ts"].astype("int64").to_numpy()
    future = np.zeros(len(ts), dtype=bool)
    future[loaded.rows("ts:future")] = True
    assert future.sum() > 0
    assert (np.diff(ts[~future]) >= 0).all()


def test_every_timestamp_is_inside_the_window_except_future_ones(loaded: Loaded) -> None:
    start, end = _window(loaded.config)
    ts = loaded.events["ts"]
    future = np.zeros(len(ts), dtype=bool)
    future[loaded.rows("ts:future")] = True
    inside = (ts >= start) & (ts < end)
    assert inside[~future].all(), ts[~future & ~inside.to_numpy()].head()
    assert not inside[future].any()
    # The window is really used: events from its first and its last weeks.
    assert ts[~future].min() < start + pd.Timedelta(days=7)
    assert ts[~future].max() > end - pd.Timedelta(days=7)


def test_no_event_spills_past_the_end_of_the_window() -> None:
    # Seed 6 once put a session starting just before the last midnight partly past the end.
    config = SynthConfig(users=3000, seed=6)
    data = simulate(config)
    future = data.truth_dirty.filter(pc.equal(data.truth_dirty["detail"], "ts:future"))[
        "row"
    ].to_numpy()
    keep = np.ones(data.events.num_rows, dtype=bool)
    keep[future] = False
    ts = data.events["ts"].to_pandas()[keep]
    _, end = _window(config)
    assert (ts < end).all(), ts[ts >= end]


def test_event_ids_unique_apart_from_duplicates(loaded: Loaded) -> None:
    ev = loaded.events
    dup = np.zeros(len(ev), dtype=bool)
    dup[loaded.dirty.loc[loaded.dirty["kind"] == "duplicate", "row"]] = True
    assert ev["event_id"].notna().all()
    assert ev.loc[~dup, "event_id"].is_unique
    assert ev["event_id"].str.fullmatch(r"evt_[0-9a-f]{12}").all()
    # Every repeated id is a marked duplicate.
    assert ev["event_id"].duplicated().to_numpy().sum() == dup.sum()


def test_order_lines_are_complete_and_revenue_adds_up(loaded: Loaded) -> None:
    orders = loaded.clean[loaded.clean["event"] == "order_completed"]
    assert len(orders) > 1000
    assert orders[["order_id", "item_id", "quantity", "price", "revenue"]].notna().all().all()
    assert (orders["quantity"] >= 1).all()
    assert (orders["price"] > 0).all()
    assert (orders["currency"] == "CNY").all()
    discount = orders["discount"].fillna(0.0)
    assert ((discount > 0) & (discount < 1)).sum() > 0
    assert ((discount >= 0) & (discount < 1)).all()
    expected = orders["quantity"] * orders["price"] * (1.0 - discount)
    error = (orders["revenue"] - expected).abs()
    # Bulk orders multiply an already rounded line revenue, so their rounding error scales too.
    bulk = loaded.anomalies[loaded.anomalies["kind"] == "bulk_order"]
    factor = dict(
        zip(bulk["id"], bulk["detail"].str.extract(r"x(\d+)$")[0].astype(int), strict=True)
    )
    tolerance = 0.01 * orders["order_id"].map(factor).fillna(1.0)
    assert (error <= tolerance + 1e-9).all(), orders[error > tolerance]


def test_order_ids_look_right_and_lines_reference_real_items(loaded: Loaded) -> None:
    clean = loaded.clean
    orders = clean[clean["event"] == "order_completed"]
    assert orders["order_id"].str.fullmatch(r"ord_[0-9a-f]{10}").all()
    assert clean.loc[clean["event"] != "order_completed", "order_id"].isna().all()
    assert clean["item_id"].dropna().isin(set(loaded.items["item_id"])).all()
    assert clean["user_id"].dropna().isin(set(loaded.users["user_id"])).all()
    # One order belongs to one user.
    by_order = orders.dropna(subset=["user_id"]).groupby("order_id")["user_id"].nunique()
    assert (by_order == 1).all()


def test_product_views_have_items_and_rows_have_an_actor(loaded: Loaded) -> None:
    clean = loaded.clean
    views = clean[clean["event"] == "product_viewed"]
    assert len(views) > 0 and views["item_id"].notna().all()
    assert (clean["user_id"].notna() | clean["anonymous_id"].notna()).all()
    assert clean["anonymous_id"].dropna().str.fullmatch(r"anon_[0-9a-f]{12}").all()
    assert clean["user_id"].dropna().str.fullmatch(r"u\d{8}").all()


# -- dirty rows ----------------------------------------------------------------------------------


def test_dirty_truth_table_is_well_formed(loaded: Loaded) -> None:
    dirty = loaded.dirty
    assert list(dirty.columns) == ["row", "kind", "detail", "expected"]
    assert dirty["row"].is_unique and dirty["row"].is_monotonic_increasing
    assert dirty["row"].between(0, len(loaded.events) - 1).all()
    expected = {"duplicate": "duplicate", "malformed": "quarantined", "missing_id": "quarantined"}
    assert (dirty["expected"] == dirty["kind"].map(expected)).all()
    details = {"price:negative", "price:nan", "ts:future", "event:unknown", "user_id:too_long"}
    assert set(dirty.loc[dirty["kind"] == "malformed", "detail"]) == details
    share = len(dirty) / len(loaded.events)
    assert 0.005 <= share <= 0.015


def test_duplicates_repeat_the_previous_row_exactly(loaded: Loaded) -> None:
    rows = loaded.dirty.loc[loaded.dirty["kind"] == "duplicate", "row"].to_numpy()
    assert len(rows) > 0 and (rows > 0).all()
    table = loaded.events_arrow
    copies, originals = table.take(pa.array(rows)), table.take(pa.array(rows - 1))
    assert same_table(copies, originals)
    assert not same_table(copies, table.take(pa.array(rows - 2)))


def test_missing_id_rows_have_neither_id(loaded: Loaded) -> None:
    rows = loaded.dirty.loc[loaded.dirty["kind"] == "missing_id", "row"]
    assert len(rows) > 0
    assert loaded.events.loc[rows, ["user_id", "anonymous_id"]].isna().all().all()


def test_malformed_rows_show_their_defect(loaded: Loaded) -> None:
    ev, arrow = loaded.events, loaded.events_arrow
    price = arrow["price"].combine_chunks()
    rows = loaded.rows("price:negative")
    assert len(rows) > 0 and (ev.loc[rows, "price"] < 0).all()
    rows = loaded.rows("price:nan")
    nan_prices = price.take(pa.array(rows))
    assert len(rows) > 0 and nan_prices.null_count == 0 and pc.all(pc.is_nan(nan_prices)).as_py()
    rows = loaded.rows("ts:future")
    assert len(rows) > 0 and (ev.loc[rows, "ts"].dt.year == 2099).all()
    rows = loaded.rows("event:unknown")
    assert len(rows) > 0 and (ev.loc[rows, "event"] == "prodct_viewd").all()
    rows = loaded.rows("user_id:too_long")
    assert len(rows) > 0 and (ev.loc[rows, "user_id"].str.len() > 256).all()


def test_clean_rows_show_no_defect(loaded: Loaded) -> None:
    clean = loaded.clean
    arrow = loaded.events_arrow.filter(pa.array(~loaded.dirty_mask))
    assert not pc.any(pc.is_nan(arrow["price"])).as_py()
    assert (clean["price"].dropna() > 0).all()
    assert (clean["ts"].dt.year < 2099).all()
    assert (clean["event"] != "prodct_viewd").all()
    assert (clean["user_id"].dropna().str.len() <= 256).all()


# -- realism -------------------------------------------------------------------------------------


def test_persona_shares_match_the_configuration(loaded: Loaded) -> None:
    shares = loaded.truth_users["persona"].value_counts(normalize=True)
    assert set(shares.index) == set(PERSONA_NAMES)
    for persona in PERSONAS:
        assert abs(shares[persona.name] - persona.share) <= 0.04, persona.name


def test_item_popularity_is_heavy_tailed(loaded: Loaded) -> None:
    views = loaded.clean.loc[loaded.clean["event"] == "product_viewed", "item_id"].value_counts()
    top = views.iloc[: len(loaded.items) // 10].sum()
    assert top / views.sum() > 0.40


def test_funnel_narrows_from_views_to_carts_to_orders(loaded: Loaded) -> None:
    clean = loaded.clean
    counts = clean["event"].value_counts()
    assert counts["product_viewed"] > counts["product_added"] > counts["order_completed"] > 0
    assert counts["page_viewed"] > counts["checkout_started"]
    identified = clean.dropna(subset=["user_id"])
    reach = identified.groupby("event")["user_id"].nunique()
    assert reach["product_viewed"] > reach["product_added"] > reach["order_completed"]


def _orders_per_user(loaded: Loaded) -> pd.Series:
    orders = loaded.clean[loaded.clean["event"] == "order_completed"]
    per_user = orders.groupby("user_id")["order_id"].nunique()
    return per_user.reindex(loaded.truth_users["user_id"], fill_value=0)


def test_loyal_high_spenders_order_more_than_window_shoppers(loaded: Loaded) -> None:
    per_user = _orders_per_user(loaded).to_numpy()
    persona = loaded.truth_users["persona"].to_numpy()
    loyal = per_user[persona == "loyal_high_spender"].mean()
    window = per_user[persona == "window_shopper"].mean()
    assert loyal > 2 * window


def test_order_counts_follow_the_true_purchase_counts(loaded: Loaded) -> None:
    truth = loaded.truth_users
    per_user = _orders_per_user(loaded).to_numpy()
    assert np.corrcoef(per_user, truth["purchases"].to_numpy())[0, 1] > 0.8


def test_bargain_hunters_pay_lower_prices(loaded: Loaded) -> None:
    orders = loaded.clean[loaded.clean["event"] == "order_completed"]
    persona = loaded.truth_users.set_index("user_id")["persona"]
    paid = orders.assign(persona=orders["user_id"].map(persona)).groupby("persona")["price"].mean()
    assert paid["bargain_hunter"] < paid["loyal_high_spender"]


def test_visitors_browse_anonymously_before_signing_up(loaded: Loaded) -> None:
    clean = loaded.clean
    signups = clean[
        (clean["event"] == "signed_up") & clean["user_id"].notna() & clean["anonymous_id"].notna()
    ]
    assert len(signups) > 100
    signup_ts = signups.set_index("anonymous_id")["ts"]
    anonymous = clean[clean["user_id"].isna() & clean["anonymous_id"].isin(signup_ts.index)]
    when = anonymous["anonymous_id"].map(signup_ts)
    before = anonymous[anonymous["ts"] < when]
    assert before["anonymous_id"].nunique() >= 0.25 * len(signups)
    # Pre-sign-up browsing happens in the two weeks (plus the session's own day) before it.
    assert (anonymous["ts"] >= when - pd.Timedelta(days=15)).all()
    assert (anonymous["ts"] <= when + pd.Timedelta(days=1, hours=1)).all()
    # Visitors who never sign up browse too.
    known = set(signups["anonymous_id"])
    assert (
        clean.loc[clean["user_id"].isna(), "anonymous_id"]
        .dropna()
        .map(lambda a: a not in known)
        .any()
    )


def test_true_category_preferences_are_distributions(loaded: Loaded) -> None:
    prefs = loaded.truth_users.filter(like="pref_")
    assert prefs.shape[1] == 12
    assert (prefs.to_numpy() >= 0).all()
    np.testing.assert_allclose(prefs.sum(axis=1).to_numpy(), 1.0, atol=1e-9)


def test_truth_users_cover_every_user_with_consistent_uplift(loaded: Loaded) -> None:
    truth = loaded.truth_users
    assert list(truth["user_id"]) == list(loaded.users["user_id"])
    np.testing.assert_array_equal(
        truth["uplift"].to_numpy(), (truth["p_treated"] - truth["p_control"]).to_numpy()
    )
    assert (truth.loc[~truth["alive"], "p_control"] == 0).all()
    assert truth[["p_control", "p_treated"]].stack().between(0, 1).all()


# -- PII -----------------------------------------------------------------------------------------


def test_emails_are_unique_and_almost_all_valid(loaded: Loaded) -> None:
    emails = loaded.users["email"]
    assert emails.notna().all() and emails.is_unique
    bad = ~emails.map(lambda e: bool(EMAIL_RE.match(e)))
    assert 0 < bad.mean() < 0.01
    assert emails[bad].str.contains("#").all()  # the deliberate defect, not accidental junk


def test_phones_names_and_birth_years(loaded: Loaded) -> None:
    users = loaded.users
    assert users["phone"].str.fullmatch(r"1\d{10}").all()
    assert users["name"].notna().all() and (users["name"].str.strip().str.len() > 0).all()
    bad_birth = users["birth_year"] == 1850
    # About 0.2% of 3,000 users: 6 expected; Binomial(3000, 0.002) lies in [1, 18] with p > 0.997.
    assert 1 <= bad_birth.sum() <= 18
    assert users.loc[~bad_birth, "birth_year"].between(1950, 2008).all()
    assert users["user_id"].is_unique


# -- the campaign --------------------------------------------------------------------------------


def test_campaign_assigns_each_eligible_user_once(loaded: Loaded) -> None:
    camp = loaded.campaigns
    assert camp["user_id"].is_unique
    assert set(camp["group"]) == {"treatment", "control"}
    assert camp["campaign_id"].nunique() == 1
    assert abs((camp["group"] == "control").mean() - loaded.config.campaign_control_share) <= 0.05
    users = loaded.users.set_index("user_id")
    assert users.loc[camp["user_id"], "marketing_opt_in"].all()
    assert (users.loc[camp["user_id"], "created_at"].to_numpy() < camp["sent_at"].to_numpy()).all()
    # Eligibility is exactly: opted in and signed up before the send.
    sent_at = camp["sent_at"].iloc[0]
    eligible = users.index[users["marketing_opt_in"] & (users["created_at"] < sent_at)]
    assert set(eligible) == set(camp["user_id"])


def test_only_treatment_users_are_messaged(loaded: Loaded) -> None:
    camp = loaded.campaigns
    cid = camp["campaign_id"].iloc[0]
    treated = set(camp.loc[camp["group"] == "treatment", "user_id"])
    sent = loaded.clean[loaded.clean["event"] == "message_sent"]
    assert (sent["campaign_id"] == cid).all()
    assert (sent["channel"] == "email").all()
    messaged = set(sent["user_id"])
    assert messaged <= treated  # no control (or ineligible) user got the message
    # A treated user's one message_sent row can only be missing if a dirty row replaced it.
    ev = loaded.events
    dirty_campaign_rows = int(ev.loc[loaded.dirty_mask, "campaign_id"].notna().sum())
    assert len(treated - messaged) <= dirty_campaign_rows
    assert len(messaged) >= 0.98 * len(treated)


def test_campaign_truth_matches_the_assignment(loaded: Loaded) -> None:
    truth, camp = loaded.truth_campaigns, loaded.campaigns
    assert truth[["campaign_id", "user_id", "group"]].equals(
        camp[["campaign_id", "user_id", "group"]]
    )
    np.testing.assert_array_equal(
        truth["uplift"].to_numpy(), (truth["p_treated"] - truth["p_control"]).to_numpy()
    )
    assert truth[["p_control", "p_treated"]].stack().between(0, 1).all()
    assert truth["uplift"].mean() > 0


def test_campaign_without_dirt_follows_the_email_funnel() -> None:
    data = simulate(SynthConfig(users=1000, seed=5, dirty_rate=0.0))
    assert data.truth_dirty.num_rows == 0
    ev = data.events.to_pandas()
    ev["event"] = _str(ev["event"])
    ev["campaign_id"] = _str(ev["campaign_id"])
    camp = data.campaigns.to_pandas()
    treated = set(camp.loc[camp["group"] == "treatment", "user_id"])
    control = set(camp.loc[camp["group"] == "control", "user_id"])
    assert treated and control

    def who(event: str) -> pd.Series:
        return ev.loc[ev["event"] == event, "user_id"]

    sent = who("message_sent")
    assert sent.is_unique and set(sent) == treated
    assert (
        ev.loc[ev["event"] == "message_sent", "campaign_id"] == camp["campaign_id"].iloc[0]
    ).all()
    delivered, opened, clicked = (
        set(who("email_delivered")),
        set(who("email_opened")),
        set(who("email_clicked")),
    )
    converted = set(who("campaign_converted"))
    assert converted <= clicked <= opened <= delivered <= treated
    assert not (set(ev.loc[ev["campaign_id"].notna(), "user_id"]) & control)
    # Each campaign conversion comes with an order attributed to the campaign.
    attributed = set(
        ev.loc[(ev["event"] == "order_completed") & ev["campaign_id"].notna(), "user_id"]
    )
    assert converted == attributed
    # The event time of the send is the logged send time (to the second).
    sent_ts = ev.loc[ev["event"] == "message_sent", "ts"]
    lag = sent_ts - camp["sent_at"].iloc[0]
    assert ((lag >= pd.Timedelta(0)) & (lag < pd.Timedelta(seconds=1))).all()


# -- anomalies -----------------------------------------------------------------------------------


def test_bots_fire_bursts_of_product_views(loaded: Loaded) -> None:
    bots = loaded.anomalies[loaded.anomalies["kind"] == "bot"]
    assert len(bots) >= 1
    clean = loaded.clean
    for bot in bots["id"]:
        mine = clean[clean["anonymous_id"] == bot]
        assert len(mine) >= 60
        assert (mine["event"] == "product_viewed").all()
        assert mine["user_id"].isna().all()
        per_minute = mine["ts"].dt.floor("min").value_counts()
        assert per_minute.max() > 30, bot


def test_bulk_orders_have_huge_quantities(loaded: Loaded) -> None:
    bulk = loaded.anomalies[loaded.anomalies["kind"] == "bulk_order"]
    assert len(bulk) >= 1
    ev = loaded.events
    for order_id, detail in zip(bulk["id"], bulk["detail"], strict=True):
        lines = ev[(ev["order_id"] == order_id) & (ev["event"] == "order_completed")]
        assert len(lines) >= 1
        factor = int(re.search(r"x(\d+)$", detail).group(1))
        assert 50 <= factor < 200
        assert (lines["quantity"] >= 50).all()
        assert (lines["quantity"] % factor == 0).all()
    # Orders that are not bulk orders are ordinary: no line anywhere near 50 units.
    clean = loaded.clean
    ordinary = clean[
        (clean["event"] == "order_completed") & ~clean["order_id"].isin(set(bulk["id"]))
    ]
    assert (ordinary["quantity"] < 50).all()


def test_end_date_moves_the_window() -> None:
    config = SynthConfig(users=300, seed=2, end=date(2024, 3, 31), days=90)
    data = simulate(config)
    start, end = _window(config)
    ts = data.events["ts"].to_pandas()
    future = data.truth_dirty.filter(pc.equal(data.truth_dirty["detail"], "ts:future"))[
        "row"
    ].to_numpy()
    keep = np.ones(len(ts), dtype=bool)
    keep[future] = False
    assert ts[keep].min() >= start
    assert ts[keep].max() < end
    assert ts[keep].max() > end - pd.Timedelta(days=3)
    # The campaign goes out 30 full days before the window closes (end is its last day).
    assert data.campaigns["campaign_id"][0].as_py().startswith("cmp_20240302_")
    assert data.stats["window"] == [start.date().isoformat(), config.end.isoformat()]


# -- bounds: huge counts, far dates, NaN (issue 12) --------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end": date(1, 1, 1)}, "--end 0001-01-01 is out of range"),
        ({"end": date(9999, 12, 31)}, "--end 9999-12-31 is out of range"),
        ({"end": "2026-10-31"}, "--end '2026-10-31' is not a date"),
        ({"users": 10**20}, "--users must be at most 10,000,000"),
        ({"items": 10**11}, "--items must be at most 1,000,000"),
        ({"days": 10**8}, "--days must be at most 3,650"),
        ({"seed": 10**23}, "--seed must be at most 9,223,372,036,854,775,807"),
        ({"users": 1500.5}, "--users must be a whole number"),
        ({"dirty_rate": float("nan")}, "dirty rate must be a finite number"),
        ({"anonymous_visitors": float("inf")}, "anonymous visitors per user must be a finite"),
        ({"anonymous_visitors": float("nan")}, "anonymous visitors per user must be a finite"),
        ({"campaign_control_share": float("nan")}, "campaign control share must be a finite"),
    ],
)
def test_out_of_range_config_is_an_input_error_naming_the_parameter(
    kwargs: dict, message: str
) -> None:
    with pytest.raises(InputError) as info:
        SynthConfig(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_the_bounds_themselves_are_accepted() -> None:
    assert SynthConfig(users=1500.0).users == 1500  # a whole float becomes an int
    SynthConfig(end=date(2000, 1, 1), days=3650)
    SynthConfig(end=date(2100, 12, 31), users=10_000_000, items=1_000_000, seed=2**63 - 1)
