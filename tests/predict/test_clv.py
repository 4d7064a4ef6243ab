"""CLV models against the published maximum-likelihood estimates on the CDNOW sample."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.config import Settings
from jingzhun.errors import InputError
from jingzhun.predict import clv
from jingzhun.predict.lifetime import orders_frame
from jingzhun.store import Store
from jingzhun.workspace import Workspace

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_summary.csv"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA)


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow) -> None:
    fit = clv.fit_bgnbd(cdnow.x, cdnow.t_x, cdnow["T"])
    # Published (FHL 2005, section 5): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4
    assert fit.converged
    assert fit.params["r"] == pytest.approx(0.243, abs=5e-4)
    assert fit.params["alpha"] == pytest.approx(4.414, abs=5e-3)
    assert fit.params["a"] == pytest.approx(0.793, abs=5e-4)
    assert fit.params["b"] == pytest.approx(2.426, abs=5e-3)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_paretonbd_reproduces_fader_hardie_2005(cdnow) -> None:
    fit = clv.fit_paretonbd(cdnow.x, cdnow.t_x, cdnow["T"])
    # Published: r = 0.553, alpha = 10.578, s = 0.606, beta = 11.669, LL = -9595.0
    assert fit.converged
    assert fit.params["r"] == pytest.approx(0.553, abs=1e-3)
    assert fit.params["alpha"] == pytest.approx(10.578, abs=2e-2)
    assert fit.params["s"] == pytest.approx(0.606, abs=1e-3)
    assert fit.params["beta"] == pytest.approx(11.669, abs=3e-2)
    assert fit.log_likelihood == pytest.approx(-9595.0, abs=0.05)


def test_gamma_gamma_reproduces_fader_hardie_2013(cdnow) -> None:
    fit = clv.fit_gamma_gamma(cdnow.x, cdnow.zbar)
    # Published: p = 6.25, q = 3.74, v = 15.44 (946 customers with repeat purchases)
    assert fit.converged
    assert fit.params["p"] == pytest.approx(6.25, abs=5e-3)
    assert fit.params["q"] == pytest.approx(3.74, abs=5e-3)
    assert fit.params["v"] == pytest.approx(15.44, abs=2e-2)


def test_bgnbd_conditional_expectation_matches_the_paper(cdnow) -> None:
    params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    # FHL 2005, section 5: a customer with x = 2, t_x = 30.43, T = 38.86 is expected to make
    # 1.226 purchases in the next 39 weeks.
    value = clv.bgnbd_expected(params, 39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert value[0] == pytest.approx(1.226, abs=2e-3)
    # P(alive) is 1 without repeat purchases: the model's assumption, not a propensity.
    alive = clv.bgnbd_p_alive(
        params, np.array([0.0, 2.0]), np.array([0.0, 5.0]), np.array([38.0, 38.0])
    )
    assert alive[0] == 1.0 and 0 < alive[1] < 1


def test_gamma_gamma_expected_spend_shrinks_toward_the_population_mean() -> None:
    params = {"p": 6.25, "q": 3.74, "v": 15.44}
    pop = 6.25 * 15.44 / 2.74
    few, many = clv.gamma_gamma_expected_spend(
        params, np.array([1.0, 50.0]), np.array([100.0, 100.0])
    )
    assert pop < few < many < 100.0


def test_log_likelihoods_are_finite_for_extreme_customers() -> None:
    x = np.array([0.0, 1.0, 200.0])
    t_x = np.array([0.0, 0.1, 39.0])
    T = np.array([39.0, 39.0, 39.0])
    for ll in (
        clv.bgnbd_log_likelihood(np.array([0.24, 4.4, 0.79, 2.4]), x, t_x, T),
        clv.paretonbd_log_likelihood(np.array([0.55, 10.6, 0.61, 11.7]), x, t_x, T),
        clv.paretonbd_log_likelihood(np.array([0.55, 11.7, 0.61, 10.6]), x, t_x, T),
    ):
        assert np.isfinite(ll).all()


@pytest.mark.parametrize(
    ("x", "t_x", "T"),
    [([], [], []), ([-1], [0], [1]), ([1], [2], [1]), ([0], [1], [2])],
)
def test_inconsistent_customer_data_is_an_input_error(x, t_x, T) -> None:
    with pytest.raises(InputError):
        clv.fit_bgnbd(np.array(x, float), np.array(t_x, float), np.array(T, float))


def test_gamma_gamma_needs_repeat_customers() -> None:
    with pytest.raises(InputError, match="repeat"):
        clv.fit_gamma_gamma(np.array([0.0, 1.0]), np.array([0.0, 10.0]))


# -- CLV on net spend (issue 14) -----------------------------------------------------------------

AS_OF = datetime(2024, 3, 11)

# Refunds carry the refunded amount as a positive revenue. The loose ones (a credit note's own
# number, or another user's order id) name an item their user never bought, so ingest cannot link
# them to an order: the CLV rule places them.
EVENTS = """event_id,event,user_id,order_id,item_id,quantity,price,revenue,ts
a1,order_completed,r1,A1,i2,2,30,60,2024-03-01 10:00:00
a2,order_completed,r1,A1,i4,1,100,40,2024-03-01 10:01:00
a3,order_refunded,r1,A1,i4,1,100,40,2024-03-02 09:00:00
a4,order_completed,r1,A2,i3,1,50,50,2024-03-05 12:00:00
a5,order_refunded,r1,A2,i3,1,50,20,2024-03-06 12:00:00
a6,order_refunded,r1,A2,i3,1,50,30,2024-03-12 12:00:00
a7,order_completed,r1,A3,i1,1,10,10,2024-03-13 12:00:00
b1,order_completed,r2,B1,i5,1,200,80,2024-03-02 10:00:00
b2,order_refunded,r2,A1,i1,1,5,5,2024-03-04 10:00:00
b3,order_completed,r2,B2,i6,6,5,30,2024-03-07 10:00:00
b4,order_refunded,r2,C900,i2,1,10,10,2024-03-08 10:00:00
c1,order_completed,r3,D1,i2,1,30,25,2024-03-03 10:00:00
c2,order_refunded,r3,D1,i2,1,30,25,2024-03-04 10:00:00
c3,order_refunded,r3,C902,i1,1,10,10,2024-03-05 10:00:00
d1,order_refunded,r4,C903,i1,1,12,12,2024-03-04 10:00:00
e1,order_refunded,r5,C904,i6,1,7,7,2024-03-01 10:00:00
e2,order_completed,r5,E1,i3,1,50,40,2024-03-02 10:00:00
e3,order_completed,r5,E2,i5,1,20,20,2024-03-06 10:00:00
e4,order_refunded,r5,C905,i1,1,5,5,2024-03-06 10:00:00
"""

NET_ORDERS = [
    # A1: 60 + 40 lines (date of the first), its 40 line refunded; A2: 50, 20 of it refunded
    # (a6's 30 and the order A3 are after as_of)
    ("r1", "A1", "2024-03-01 10:00:00", 60.0),
    ("r1", "A2", "2024-03-05 12:00:00", 30.0),
    # b2 names r1's order A1, no order of r2: it reduces r2's latest earlier order, B1;
    # the credit note b4 reduces B2
    ("r2", "B1", "2024-03-02 10:00:00", 75.0),
    ("r2", "B2", "2024-03-07 10:00:00", 20.0),
    # r3's D1: 25 - 25 - 10 (c3 is loose) = -10, not a purchase; r4 has no order
    # e1 comes before any order of r5: left out; e4 at E2's very time reduces E2
    ("r5", "E1", "2024-03-02 10:00:00", 40.0),
    ("r5", "E2", "2024-03-06 10:00:00", 15.0),
]


def test_orders_frame_holds_each_order_net_of_its_refunds(tmp_path: Path) -> None:
    settings = Settings()
    with Workspace(Store.open(tmp_path / "store.duckdb", settings), settings) as ws:
        path = tmp_path / "events.csv"
        path.write_text(EVENTS, encoding="utf-8")
        assert ws.ingest("events", [path]).quarantined == 0
        got = orders_frame(ws.store, AS_OF)
    assert list(got.columns) == ["customer", "order_id", "date", "amount"]
    rows = [(r.customer, r.order_id, r.date.to_pydatetime(), r.amount) for r in got.itertuples()]
    want = [(c, o, datetime.fromisoformat(d), a) for c, o, d, a in NET_ORDERS]
    assert rows == want
    assert got["amount"].dtype == np.float64


def test_a_store_without_refunds_keeps_every_order(tmp_path: Path) -> None:
    settings = Settings()
    with Workspace(Store.open(tmp_path / "store.duckdb", settings), settings) as ws:
        path = tmp_path / "events.csv"
        path.write_text(
            "\n".join(line for line in EVENTS.splitlines() if "order_refunded" not in line),
            encoding="utf-8",
        )
        ws.ingest("events", [path])
        got = orders_frame(ws.store, AS_OF)
    assert got["order_id"].tolist() == ["A1", "A2", "B1", "B2", "D1", "E1", "E2"]
    assert got["amount"].tolist() == [100.0, 50.0, 80.0, 30.0, 25.0, 40.0, 20.0]


def test_clv_on_the_shop_is_fitted_on_net_spend(shop, tmp_path: Path) -> None:
    """Refund every 7th order line of the simulated shop under its order's id, and every 11th
    under a credit note's own number: the fit still runs, on fewer orders, and values the
    customers lower."""
    settings = Settings()
    with Workspace(Store.open(tmp_path / "store.duckdb", settings), settings) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        at = ws.store.scalar("SELECT max(ts) FROM events") + timedelta(microseconds=1)
        gross = orders_frame(ws.store, at)
        before = ws.predict.clv(as_of=at).to_dict()

        lines = ws.store.sql(
            "SELECT user_id, order_id, item_id, quantity, price, revenue, ts FROM events "
            "WHERE event = 'order_completed' AND user_id IS NOT NULL AND ts < ? "
            "ORDER BY ts, event_id",
            [at - timedelta(days=1)],
        ).df()
        linked, notes = lines.iloc[::7], lines.iloc[3::11]
        refunds = pd.concat([linked, notes.assign(order_id=[f"C{i}" for i in range(len(notes))])])
        refunds["ts"] = refunds["ts"] + pd.Timedelta(hours=1)
        refunds["event"] = "order_refunded"
        refunds["event_id"] = [f"rf{i}" for i in range(len(refunds))]
        path = tmp_path / "refunds.csv"
        refunds.to_csv(path, index=False)
        assert ws.ingest("events", [path]).quarantined == 0
        net = orders_frame(ws.store, at)
        after = ws.predict.clv(as_of=at).to_dict()

    assert len(refunds) > 100
    assert len(net) < len(gross)
    assert net["amount"].sum() < gross["amount"].sum() - 0.9 * refunds["revenue"].sum()
    assert (net["amount"] > 0).all()
    assert after["customers"] == net["customer"].nunique()
    assert after["converged"]
    assert after["total_clv"] < before["total_clv"]
