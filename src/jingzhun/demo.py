"""The end-to-end demo: simulate a shop, run every stage on it, write the report.

Each stage adds its step here as it lands; the demo is what ``make demo`` runs on a new machine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jingzhun.checks import bounded_int
from jingzhun.config import Settings
from jingzhun.errors import InputError
from jingzhun.store import Store
from jingzhun.synth import SynthConfig, simulate
from jingzhun.workspace import Workspace

StepFn = Callable[[str], None]


#: Models the demo compares offline (BPR and user-kNN are slower and weaker on this shop; the
#: full set runs with `jingzhun recommend evaluate`).
DEMO_MODELS = ("pop", "itemknn", "als", "ease", "content", "hybrid")


#: Fewest simulated users with which every model of the demo has both classes to learn
#: (800 runs end to end in tests/test_demo.py; 10 did not).
MIN_USERS = 800


#: Members of each demo campaign (both arms), and the share held out as control.
DEMO_CAMPAIGN_MEMBERS = 4000
DEMO_CONTROL_SHARE = 0.5


def campaign_loop(ws: Workspace, out: Path, *, seed: int, lang: str = "en") -> list[dict[str, Any]]:
    """The closed loop: two campaigns of the same size and cost — one to a random sample, one
    to the highest uplift scores among the rest — sent through a real SMTP server on
    127.0.0.1, answered by the simulator's customers (opens, clicks and orders, ingested as
    events like any others), and measured against their control groups. Each result carries
    the simulator's true effect next to the measured lift."""
    import pandas as pd
    from aiosmtpd.controller import Controller

    from jingzhun.synth.world import REFERENCE_MESSAGE, World, response_events

    class _Count:
        messages = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages += 1
            return "250 OK"

    probe = {
        "name": "demo-probe",
        "channel": "email",
        "variants": [{"name": "a", "subject": "s", "body": "b"}],
    }
    eligible = ws.campaigns.audience(probe).members
    size = max(200, min(DEMO_CAMPAIGN_MEMBERS, eligible // 3))
    folder = out / "campaigns"
    folder.mkdir(exist_ok=True)
    (folder / "offer.html").write_text(_DEMO_EMAIL, encoding="utf-8")
    sink = _Count()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings = Settings.model_validate(
        {
            "email": {
                "port": port,
                "from": "Demo Shop <news@shop.example>",
                "rate_per_second": 10000,
            },
            "tracking": {"base_url": "http://127.0.0.1:8000"},
        }
    )
    world = World.load(out / "data")
    message = REFERENCE_MESSAGE  # the message the past campaign (and the uplift model) knew
    results = []
    try:
        sender = Workspace(ws.store, settings)  # the same open store, with the demo's settings
        for name, targeting, top, extra in (
            ("demo-random", "random", "random", ""),
            ("demo-uplift", "uplift", "uplift", 'campaigns = ["demo-random"]\n'),
        ):
            spec = folder / f"{name}.toml"
            spec.write_text(
                _DEMO_SPEC.format(
                    name=name, top=top, n=size, share=DEMO_CONTROL_SHARE, extra=extra,
                    discount=message.discount,
                ),
                encoding="utf-8",
            )  # fmt: skip
            sender.campaigns.create(spec, replace=True)
            sent = sender.campaigns.send(name, lang=lang)
            members = sender.campaigns.members(name)
            snap = ws.store.scalar("SELECT snapshot_at FROM campaigns WHERE name = ?", [name])
            treated = (members["arm"] == "treatment").to_numpy()
            window = float(_DEMO_WINDOW_DAYS)
            answer = world.respond(
                members["user_id"], treated=treated, message=message, seed=seed + len(results) + 1,
                days=window,
            )  # fmt: skip
            events = response_events(
                answer,
                campaign=name,
                start=snap,
                days=window,
                items=ws.sql("SELECT item_id, category, price FROM items"),
                seed=seed + 100 + len(results),
            )
            path = folder / f"{name}-responses.parquet"
            events.to_parquet(path)
            responses = ws.ingest.files("events", [str(path)])
            report = ws.evaluate.campaign(name)
            results.append(
                {
                    "name": name,
                    "targeting": targeting,
                    "sent": sent.counts["sent"],
                    "control": sent.counts["control"],
                    "true_effect": round(float(pd.Series(answer.loc[treated, "uplift"]).mean()), 5),
                    "lift": round(report.conversion["lift"], 5),
                    "ci_low": round(report.conversion["ci_low"], 5),
                    "ci_high": round(report.conversion["ci_high"], 5),
                    "lift_cuped": round(report.conversion_cuped["lift"], 5),
                    "incremental_profit": report.incremental["profit"],
                    "roi": report.incremental["roi"],
                    "responses": {"batch_id": responses.batch_id, "events": responses.inserted},
                }
            )
    finally:
        controller.stop()
    return results


_DEMO_WINDOW_DAYS = 14
_DEMO_SPEC = """name = "{name}"
channel = "email"
description = "jingzhun demo: {top} targeting"
recommendations = 3
[audience]
top = {{ score = "{top}", n = {n} }}
[exclude]
{extra}[control]
share = {share}
[[variants]]
name = "offer"
subject = "{{{{ first_name }}}}, {discount:.0%} off picks for you"
template = "offer.html"
[offer]
cost_per_message = 0.02
margin = 0.3
discount = {discount}
conversion_window_days = 14
"""
_DEMO_EMAIL = """<html><body style="font-family: sans-serif">
<h2>Hello {{ first_name }},</h2>
<p>{{ (campaign.discount * 100)|round|int }}% off these, this week only:</p>
<ul>{% for r in recommendations %}
<li><a href="https://shop.example/item/{{ r.item_id }}">{{ r.title }}</a> &middot; {{ r.reason_text }}</li>
{% endfor %}</ul>
<p style="font-size: small"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


def run_demo(
    out: str | Path = "jingzhun-demo",
    *,
    users: int = 20_000,
    seed: int = 0,
    lang: str = "en",
    step: StepFn | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out``: data under ``out/data``, the store, and ``out/report.html``.

    A store left by an earlier demo in ``out`` is replaced; nothing else is touched.
    """
    from jingzhun.report.i18n import Translator

    Translator(lang)  # an unknown language fails now, not after minutes of work
    # Every stage trains and evaluates on held-out users: 10 users left a class with one
    # member and a scikit-learn traceback minutes in (issue 12).
    bounded_int(
        users,
        "--users",
        lo=MIN_USERS,
        hint=f"the demo needs at least {MIN_USERS:,} users to train on",
    )
    config = SynthConfig(users=users, seed=seed)  # so do bad numbers, before --out is made
    say = step or (lambda _m: None)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror}", hint="pass another --out") from exc
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        say(name)
        t0 = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        return value

    data = timed("simulate the shop", lambda: simulate(config))
    files = timed("write the shop's files", lambda: data.write(out / "data"))
    db = out / "jingzhun.duckdb"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    ws = Workspace(Store.open(db, Settings()), Settings())
    try:
        batches = {}
        for kind in ("items", "users", "events"):
            batches[kind] = timed(
                f"ingest {kind}", lambda kind=kind: ws.ingest.files(kind, [files[kind]])
            ).to_dict()
        cleaning = timed("cleaning report", ws.ingest.clean).to_dict()
        profiles = timed("profiles and tags", ws.profiles.build).to_dict()
        seg_rfm = timed("RFM segments", lambda: ws.segments.run("rfm", name="rfm")).to_dict()
        seg_km = timed(
            "behaviour segments (k-means, automatic k)",
            lambda: ws.segments.run("kmeans", name="behaviour", stability_resamples=3),
        ).to_dict()
        compared = timed(
            "recommendation models compared offline (leave-last-out)",
            lambda: ws.recs.evaluate(
                split_spec="leave-last-out", models=list(DEMO_MODELS), budget=3, seed=seed
            ),
        ).to_json()
        trained = timed("hybrid recommender (weights tuned on validation)", ws.recs.train)
        rec_rows = timed("recommendations for every user", lambda: ws.recs.batch(10))
        example_user = ws.store.scalar(
            "SELECT user_id FROM recommendations WHERE reason LIKE 'bought:%' ORDER BY user_id LIMIT 1"
        )
        example = ws.recs.for_user(example_user, 5).to_dict() if example_user else None
        propensity = timed(
            "purchase propensity: five classifiers on a time-based split", ws.predict.train
        )
        timed("propensity scores and the likely_to_buy tag", ws.predict.score)
        churn = timed(
            "churn model (logistic regression and LightGBM)",
            lambda: ws.predict.train("churn", models=["logistic", "lightgbm"]),
        )
        timed("churn scores and the churn_risk tag", lambda: ws.predict.score("churn"))
        clv = timed("customer lifetime value (BG/NBD + Gamma-Gamma)", ws.predict.clv).to_dict()
        import pandas as pd

        uplift = timed(
            "uplift models on the past campaign, checked against the true uplift",
            lambda: ws.predict.uplift(
                pd.read_parquet(files["campaigns"]),
                truth=pd.read_parquet(files["truth_campaigns"]),
                seed=seed,
            ),
        ).to_dict()
        uplift_scores = timed(
            "uplift scores and the persuadable tag", lambda: ws.predict.score("uplift")
        )
        campaigns = timed(
            "two campaigns (uplift-targeted and random) sent, answered and measured",
            lambda: campaign_loop(ws, out, seed=seed, lang=lang),
        )
        summary = timed("summary", ws.ingest.summary).to_dict()
        report = timed("HTML report", lambda: ws.report(out / "report.html", lang=lang))
    finally:
        ws.close()
    return {
        "out": str(out),
        "store": str(db),
        "report": str(report),
        "data": files,
        "simulated": data.stats,
        "ingest": batches,
        "cleaning": {
            "outlier_orders": cleaning["outliers"].get("outliers", 0),
            "burst_visitors": cleaning["bursts"].get("actors", 0),
            "flagged": cleaning["flagged"],
        },
        "profiles": {
            "users": profiles["users"],
            "as_of": profiles["as_of"],
            "tags": profiles["tags"],
        },
        "segments": {
            run["name"]: {
                "run_id": run["run_id"],
                "method": run["method"],
                "segments": run["segments"],
                "silhouette": run["metrics"].get("silhouette"),
                "stability_ari": run["metrics"].get("stability_ari"),
                "labels": {p["segment"]: p["label"] for p in run["portraits"]},
            }
            for run in (seg_rfm, seg_km)
        },
        "recommend": {
            "compared": {
                name: {m: r[m] for m in ("precision", "recall", "ndcg", "map", "coverage")}
                for name, r in compared["models"].items()
            },
            "best_offline": compared["best"],
            "model": trained.model_id,
            "validation": trained.validation,
            "rows": rec_rows,
            "example": example,
        },
        "predict": {
            "propensity": {
                "model_id": propensity.model_id,
                "best": propensity.model,
                "test": {k: round(v, 4) for k, v in propensity.test.items()},
                "compared": {
                    r["model"]: {
                        "validation_auc": round(r["validation_roc_auc"], 4),
                        "test_auc": round(r["test_roc_auc"], 4),
                    }
                    for r in propensity.comparison
                },
            },
            "churn": {
                "model_id": churn.model_id,
                "best": churn.model,
                "test_auc": round(churn.test["roc_auc"], 4),
            },
            "clv": {k: clv[k] for k in ("model_id", "customers", "total_clv", "mean_clv")},
            "uplift": {
                "model_id": uplift["model_id"],
                "best": uplift["model"],
                "test": uplift["comparison"][uplift["model"]]["test"],
                "policy": uplift["policy"],
                "worth_messaging": uplift_scores.extra["worth_messaging"],
            },
        },
        "campaigns": campaigns,
        "summary": summary,
        "seconds": timings,
    }
