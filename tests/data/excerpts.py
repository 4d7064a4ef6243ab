"""Write the small public-log excerpts the recipes of docs/datasets.md are tested on.

Each file is in the exact format of a public log (column order, header or none, id and time
conventions, the quirks the recipe's options exist for) but its rows are made up here, from a
fixed seed: the datasets themselves are not redistributed. Shoppers have a favourite category,
so that the recommenders have something to find. Run ``python tests/data/excerpts.py`` to
write them again; the files are committed, and the recipe tests read the committed files.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
SEED = 14


def _shoppers(rng: random.Random, users: int, categories: int) -> list[tuple[int, int]]:
    return [(u, rng.randrange(categories)) for u in range(users)]


def _item(rng: random.Random, favourite: int, categories: int, per_category: int) -> int:
    """An item id: 80% from the shopper's favourite category."""
    category = favourite if rng.random() < 0.8 else rng.randrange(categories)
    return category * per_category + rng.randrange(per_category)


def taobao(rng: random.Random) -> str:
    """Taobao UserBehavior: no header; user_id,item_id,category_id,behavior_type,timestamp
    with pv|cart|fav|buy and epoch seconds (25 Nov – 3 Dec 2017, China time)."""
    start = int(datetime(2017, 11, 25, tzinfo=UTC).timestamp()) - 8 * 3600
    categories, per = 6, 12
    cat_ids = [2520377, 4181361, 4869428, 1320293, 2465336, 982926]
    rows = []
    for user, fav in _shoppers(rng, 60, categories):
        uid = 100 + user * 37
        t = start + rng.randrange(86400)
        for _ in range(rng.randint(6, 14)):
            item = _item(rng, fav, categories, per)
            item_id = 2268318 + item * 1031
            t += rng.randrange(600, 40000)
            behaviours = ["pv", *rng.choices(["pv", "cart", "fav", "buy"], [6, 2, 1, 2], k=1)]
            for b in behaviours:
                rows.append((uid, item_id, cat_ids[item // per], b, t))
                t += rng.randrange(30, 900)
    return "".join(f"{u},{i},{c},{b},{t}\n" for u, i, c, b, t in rows)


def retailrocket(rng: random.Random) -> str:
    """RetailRocket events.csv: timestamp,visitorid,event,itemid,transactionid with epoch
    milliseconds; view|addtocart|transaction; transactionid only on transactions."""
    start = 1433221332117
    categories, per = 5, 15
    out = ["timestamp,visitorid,event,itemid,transactionid\n"]
    transaction = 4000
    for visitor, fav in _shoppers(rng, 70, categories):
        vid = 257597 + visitor * 113
        t = start + rng.randrange(86_400_000)
        for _ in range(rng.randint(5, 12)):
            item = 355908 + _item(rng, fav, categories, per) * 7
            t += rng.randrange(60_000, 7_200_000)
            out.append(f"{t},{vid},view,{item},\n")
            if rng.random() < 0.35:
                t += rng.randrange(10_000, 600_000)
                out.append(f"{t},{vid},addtocart,{item},\n")
                if rng.random() < 0.6:
                    t += rng.randrange(10_000, 600_000)
                    out.append(f"{t},{vid},transaction,{item},{transaction}\n")
                    transaction += 1
    return "".join(out)


def online_retail(rng: random.Random) -> str:
    """UCI Online Retail: InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
    CustomerID,Country; M/D/YYYY H:MM dates; cancellations C-prefixed with negative
    quantities; guest sales without a CustomerID; descriptions with commas, quoted."""
    products = [
        ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2.55),
        ("71053", "WHITE METAL LANTERN", 3.39),
        ("84406B", "CREAM CUPID HEARTS COAT HANGER", 2.75),
        ("84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", 3.39),
        ("22752", "SET 7 BABUSHKA NESTING BOXES", 7.65),
        ("21730", "GLASS STAR FROSTED T-LIGHT HOLDER", 4.25),
        ("22633", "HAND WARMER UNION JACK", 1.85),
        ("22632", "HAND WARMER RED POLKA DOT", 1.85),
        ("84879", "ASSORTED COLOUR BIRD ORNAMENT", 1.69),
        ("22745", "POPPY'S PLAYHOUSE BEDROOM", 2.10),
        ("22748", "POPPY'S PLAYHOUSE KITCHEN", 2.10),
        ("22749", "FELTCRAFT PRINCESS CHARLOTTE DOLL", 3.75),
        ("22310", "IVORY KNITTED MUG COSY", 1.65),
        ("84969", "BOX OF 6 ASSORTED COLOUR TEASPOONS", 4.25),
        ("22623", "BOX OF VINTAGE JIGSAW BLOCKS", 4.95),
        ("21754", "HOME BUILDING BLOCK WORD", 5.95),
        ("21755", "LOVE BUILDING BLOCK WORD", 5.95),
        ("21777", "RECIPE BOX WITH METAL HEART", 7.95),
        ("48187", "DOORMAT NEW ENGLAND", 7.95),
        ("22960", "JAM MAKING SET WITH JARS", 4.25),
        ("22913", "RED COAT RACK PARIS FASHION", 4.95),
        ("22912", "YELLOW COAT RACK PARIS FASHION", 4.95),
        ("22914", "BLUE COAT RACK PARIS FASHION", 4.95),
        ("21724", "STICKER SHEET, PANDA AND BUNNIES", 0.85),
    ]
    per = 6  # four "categories" of six products each
    countries = ["United Kingdom"] * 6 + ["France", "Germany", "EIRE", "Australia"]
    out = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"]
    invoice = 536365
    when = datetime(2010, 12, 1, 8, 26)
    bought: list[tuple[int, str, str, float, int, str]] = []

    def line(no: str, p: tuple[str, str, float], qty: int, at: datetime, cust: str, c: str) -> str:
        desc = f'"{p[1]}"' if "," in p[1] else p[1]
        date = f"{at.month}/{at.day}/{at.year} {at.hour}:{at.minute:02d}"
        return f"{no},{p[0]},{desc},{qty},{date},{p[2]:g},{cust},{c}\n"

    customers = [(17850 + c * 41, fav, rng.choice(countries)) for c, fav in _shoppers(rng, 45, 4)]
    for _ in range(110):
        cust, fav, country = rng.choice(customers)
        guest = rng.random() < 0.06
        when += timedelta(minutes=rng.randrange(20, 600))
        for _ in range(rng.randint(1, 5)):
            p = products[_item(rng, fav, 4, per)]
            qty = rng.choice([1, 2, 3, 4, 6, 8, 12, 24])
            out.append(line(str(invoice), p, qty, when, "" if guest else str(cust), country))
            if not guest:
                bought.append((cust, p[0], p[1], p[2], qty, country))
        invoice += 1
        if bought and rng.random() < 0.12:  # a cancellation of something bought before
            cust, code, desc, price, qty, country = rng.choice(bought)
            when += timedelta(minutes=rng.randrange(5, 120))
            back = -rng.randint(1, qty)
            out.append(line(f"C{invoice}", (code, desc, price), back, when, str(cust), country))
            invoice += 1
    return "".join(out)


def segment_shop(rng: random.Random) -> str:
    """Segment archive: one message per line as the S3 destination writes them."""
    categories = ["Shoes", "Bags", "Outdoor", "Kitchen", "Books"]
    lines = []
    t = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)

    def stamp(at: datetime) -> str:
        return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def message(kind: str, mid: str, at: datetime, **fields: object) -> None:
        body = {"type": kind, "messageId": mid, **fields}
        body |= {"originalTimestamp": stamp(at), "timestamp": stamp(at)}
        body |= {"sentAt": stamp(at), "receivedAt": stamp(at + timedelta(seconds=1))}
        lines.append(json.dumps(body, ensure_ascii=False))

    n = 0
    for user, fav in _shoppers(rng, 40, len(categories)):
        uid, anon = f"u-{1000 + user}", f"anon-{user:04x}"
        t += timedelta(minutes=rng.randrange(5, 90))
        context = {"library": {"name": "analytics.js", "version": "4.1.0"}, "locale": "zh-CN"}
        message("page", f"pg-{n}", t, anonymousId=anon, name="Home", context=context)
        n += 1
        if rng.random() < 0.7:
            traits = {"email": f"user{user}@example.com", "plan": rng.choice(["free", "pro"])}
            message("identify", f"id-{n}", t, userId=uid, anonymousId=anon, traits=traits)
            n += 1
        for _ in range(rng.randint(4, 10)):
            item = _item(rng, fav, len(categories), 8)
            product = {
                "product_id": f"P-{item:03d}",
                "category": categories[item // 8],
                "name": f"Product {item}",
                "price": round(9.9 + item * 1.5, 2),
            }
            t += timedelta(minutes=rng.randrange(1, 30))
            ids = {"userId": uid, "anonymousId": anon}
            message("track", f"pv-{n}", t, event="Product Viewed", properties=product, **ids)
            n += 1
            if rng.random() < 0.3:
                t += timedelta(minutes=2)
                order = {
                    "order_id": f"O-{n}",
                    "currency": "CNY",
                    "products": [{**product, "quantity": rng.randint(1, 3)}],
                }
                message("track", f"oc-{n}", t, event="Order Completed", properties=order, **ids)
                n += 1
        if rng.random() < 0.2:
            play = {"video_id": f"v-{user}"}
            message("track", f"vp-{n}", t, event="Video Played", userId=uid, properties=play)
            n += 1
    return "\n".join(lines) + "\n"


def main() -> None:
    for name, make in [
        ("taobao_userbehavior.csv", taobao),
        ("retailrocket_events.csv", retailrocket),
        ("online_retail.csv", online_retail),
        ("segment_shop.jsonl", segment_shop),
    ]:
        (HERE / name).write_text(make(random.Random(SEED)), encoding="utf-8")


if __name__ == "__main__":
    main()
