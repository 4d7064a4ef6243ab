"""Ingest the real-log formats of issue 14: a Segment archive and a Taobao UserBehavior file,
with the plain CSV path measured in the same run as the baseline.

Targets, on 2 cores: Segment JSON Lines >= 200k messages/s; the Taobao path (headerless CSV,
event map, derived order ids, items from the rows) at the plain CSV rate (ratio >= 1).

The data (N rows each, cached in benchmarks/data/ingest-logs-N/, drawn with NumPy, seeded):

- ``segment.jsonl``: N messages shaped like those Segment's S3 and warehouse destinations
  archive: ~70% track (Product Viewed, Product List Viewed, Products Searched, Product Added,
  Cart Viewed, Checkout Started, custom names such as Video Played; 3% Order Completed with
  1-4 products), 15% page, 7% screen, 5% identify (email, name, plan, createdAt, an address
  object), 1.5% alias, 1.5% group; each with messageId, userId and/or anonymousId, the four
  timestamps, a web context (library, ip, locale, userAgent, page, campaign on a fifth) or a
  mobile one (app, device, os, network), 600-1,200 bytes; 0.2% of lines delivered twice, as
  at-least-once delivery does. messages/s counts lines read (an order's message becomes
  several event rows, so ``rows_read`` is not the message count).
- ``UserBehavior.csv``: Taobao's format (no header; user_id, item_id, category_id,
  pv/cart/fav/buy, epoch seconds between 2017-11-25 and 2017-12-03 Beijing time), grouped by
  user and sorted by time within a user as the published file is.
- The baseline: the first N events of the shared simulation (:func:`common.shop_files`), as a
  CSV with a header, through the plain path.

Also measured: the Segment mapping alone (the SELECTs of :mod:`jingzhun.ingest.segment` over
the whole file in DuckDB, nothing validated or stored), to show where the ingest's time goes.

``python benchmarks/bench_ingest_logs.py --rows 200000`` runs a small size quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_recommend import busy_seconds, children_cpu, src_version
from common import DATA, ROOT, best, run, save, shop_files

ROWS = 2_000_000
TARGET = {"segment_messages_per_s": 200_000, "taobao_vs_csv": 1.0}

#: The Taobao UserBehavior recipe (docs: ingesting public logs).
TAOBAO: dict[str, Any] = {
    "columns": ["user_id", "item_id", "category_id", "event", "ts"],
    "event_map": {
        "pv": "product_viewed",
        "cart": "product_added",
        "fav": "product_added_to_wishlist",
        "buy": "order_completed",
    },
    "order_id": "user-time",
    "item_columns": {"category": "category_id"},
}

# -- Segment archive -------------------------------------------------------------------------

#: Share of each message (a track's event name, or the message type).
MIX: dict[str, float] = {
    "Product Viewed": 0.28,
    "Product List Viewed": 0.10,
    "Products Searched": 0.07,
    "Product Added": 0.08,
    "Product Removed": 0.015,
    "Cart Viewed": 0.03,
    "Checkout Started": 0.03,
    "Order Completed": 0.03,
    "Video Played": 0.025,
    "Button Clicked": 0.025,
    "Live Stream Joined": 0.01,
    "Coupon Copied": 0.005,
    "page": 0.15,
    "screen": 0.07,
    "identify": 0.05,
    "alias": 0.015,
    "group": 0.015,
}
_TYPES = ("page", "screen", "identify", "alias", "group")
_SITE = "https://www.jzshop.cn"
_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (Linux; Android 13; V2227A; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/101.0.4951.74 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
    "Mozilla/5.0 (Linux; Android 14; 23049RAD8C) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/118.0.0.0 Mobile Safari/537.36 XiaoMi/MiuiBrowser/17.8",
)
_LOCALES = ("zh-CN", "zh-CN", "zh-CN", "zh-CN", "en-US", "zh-TW", "zh-HK")
_REFERRERS = (
    "",
    "https://www.baidu.com/",
    "https://www.google.com/",
    "https://weixin.qq.com/",
    "https://www.xiaohongshu.com/",
    f"{_SITE}/",
    f"{_SITE}/c/new-arrivals",
)
_CAMPAIGNS = (
    ("double11_warmup", "wechat", "social"),
    ("spring_sale_2024", "baidu", "cpc"),
    ("newsletter_0307", "email", "email"),
    ("kol_beauty_march", "xiaohongshu", "influencer"),
    ("retarget_cart", "douyin", "paid_social"),
)
_CATEGORIES = (
    "Apparel",
    "Shoes",
    "Beauty",
    "Skincare",
    "Electronics",
    "Phones",
    "Home",
    "Kitchen",
    "Toys",
    "Sports",
    "Books",
    "Snacks",
    "Tea",
    "Baby",
    "Pets",
    "Jewelry",
)
_BRANDS = ("Li-Ning", "Anta", "Xiaomi", "Huawei", "Perfect Diary", "Florasis", "Midea", "Haier")
_NOUNS = ("Running Shoes", "Hoodie", "Serum", "Earbuds", "Rice Cooker", "Backpack", "Tea Set")
_QUERIES = ("running shoes", "lipstick", "phone case", "green tea", "air fryer", "down jacket")
_PAGES = (
    ("Home", "Shop", "/", "Jingzhun Shop - Home"),
    ("Product List", "Shop", "/c/new-arrivals", "New arrivals - Jingzhun Shop"),
    ("Product Detail", "Shop", "/products/", "Product - Jingzhun Shop"),
    ("Cart", "Checkout", "/cart", "Your cart - Jingzhun Shop"),
    ("Account", "Account", "/account", "My account - Jingzhun Shop"),
)
_SCREENS = ("Home", "Product Detail", "Search Results", "Cart", "Orders", "Live Room")
_CITIES = (
    ("Shanghai", "Shanghai", "200000"),
    ("Beijing", "Beijing", "100000"),
    ("Hangzhou", "Zhejiang", "310000"),
    ("Shenzhen", "Guangdong", "518000"),
    ("Chengdu", "Sichuan", "610000"),
    ("Wuhan", "Hubei", "430000"),
)
_FIRST = ("Wei", "Fang", "Jing", "Lei", "Min", "Jun", "Yan", "Tao", "Emily", "Kevin")
_LAST = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu")
_MAIL = ("qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "icloud.com")
_PLANS = ("free", "free", "plus", "vip", "svip")
_LIBRARY = '"library":{"name":"analytics.js","version":"npm:next-1.66.0"}'


def write_segment(path: Path, n: int, seed: int = 14) -> dict[str, Any]:
    """Write ``n`` Segment messages (one JSON object a line) to ``path``; return their mix.

    Every random draw is a NumPy array made up front; the loop only formats pre-built
    fragments (per user, per product) into a template per message type, which keeps 2M
    messages to well under a minute.
    """
    rng = np.random.default_rng(seed)
    names = list(MIX)
    code = rng.choice(len(names), n, p=np.array(list(MIX.values())) / sum(MIX.values()))
    # Users: activity is heavy-tailed; each has one device (anonymousId), ip, locale and agent.
    n_users = max(500, n // 25)
    weight = rng.lognormal(0.0, 1.2, n_users)
    user = rng.choice(n_users, n, p=weight / weight.sum())
    anon_hex = rng.bytes(16 * n_users).hex()
    anon = [
        f'"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"'
        for h in (anon_hex[32 * u : 32 * u + 32] for u in range(n_users))
    ]
    ips = rng.integers(1, 255, (n_users, 4)).tolist()
    ua = rng.integers(0, len(_UAS), n_users).tolist()
    locale = rng.integers(0, len(_LOCALES), n_users).tolist()
    web = [
        f'"ip":"{a}.{b}.{c}.{d}",{_LIBRARY},"locale":"{_LOCALES[lo]}","userAgent":"{_UAS[k]}"'
        for (a, b, c, d), k, lo in zip(ips, ua, locale, strict=True)
    ]
    ios = rng.random(n_users) < 0.55
    app = [
        (
            f'"app":{{"build":"4120","name":"Jingzhun Shop","namespace":"cn.jingzhun.shop",'
            f'"version":"6.12.0"}},"device":{{"adTrackingEnabled":false,"id":{anon[u]},'
            + (
                '"manufacturer":"Apple","model":"iPhone15,2","type":"ios"},'
                '"library":{"name":"analytics-ios","version":"4.1.8"},'
                '"os":{"name":"iOS","version":"17.2.1"}'
                if ios[u]
                else '"manufacturer":"Xiaomi","model":"23049RAD8C","type":"android"},'
                '"library":{"name":"analytics-android","version":"4.11.3"},'
                '"os":{"name":"Android","version":"14"}'
            )
            + f',"ip":"{a}.{b}.{c}.{d}","locale":"{_LOCALES[locale[u]]}",'
            '"network":{"carrier":"China Mobile","cellular":false,"wifi":true},'
            '"screen":{"density":3,"height":844,"width":390},"timezone":"Asia/Shanghai"'
        )
        for u, (a, b, c, d) in enumerate(ips)
    ]
    # Products: popularity is heavy-tailed too.
    n_products = max(1000, n // 100)
    price = np.round(rng.lognormal(4.5, 0.9, n_products), 1).tolist()
    cat = rng.integers(0, len(_CATEGORIES), n_products).tolist()
    brand = rng.integers(0, len(_BRANDS), n_products).tolist()
    noun = rng.integers(0, len(_NOUNS), n_products).tolist()
    product = [
        f'"product_id":"{100000 + k}","sku":"SKU-{100000 + k}-{k % 5}",'
        f'"category":"{_CATEGORIES[cat[k]]}","name":"{_BRANDS[brand[k]]} {_NOUNS[noun[k]]} '
        f'{k % 97}","brand":"{_BRANDS[brand[k]]}","price":{price[k]}'
        for k in range(n_products)
    ]
    pweight = rng.lognormal(0.0, 1.5, n_products)
    pick = rng.choice(n_products, (n, 5), p=pweight / pweight.sum()).tolist()
    # Times: 30 days of March 2024, in order (archives are written by receive hour). The
    # client's clock is off (originalTimestamp), messages wait in a batch (sentAt) and travel
    # (receivedAt); timestamp is Segment's corrected time.
    base = np.sort(rng.integers(1_709_251_200_000, 1_711_843_200_000, n))
    skew = rng.normal(0, 20_000, n_users).astype(np.int64)[user]
    wait = rng.exponential(800, n).astype(np.int64)
    travel = rng.exponential(90, n).astype(np.int64) + 5

    def iso(ms: np.ndarray) -> list[str]:
        return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").tolist()

    original, sent = iso(base + skew), iso(base + skew + wait)
    received, stamp = iso(base + wait + travel), iso(base + travel)
    message_hex = rng.bytes(16 * n).hex()
    logged_in = (rng.random(n) < 0.6).tolist()
    server = (rng.random(n) < 0.4).tolist()
    campaign = rng.integers(0, 5 * len(_CAMPAIGNS), n).tolist()  # a fifth have one
    referrer = rng.integers(0, len(_REFERRERS), n).tolist()
    small = rng.integers(0, 1_000_000, (n, 4)).tolist()
    twice = set(np.flatnonzero(rng.random(n) < 0.002).tolist())
    code_l, user_l = code.tolist(), user.tolist()
    kinds = [name if name in _TYPES else "track" for name in names]
    written = 0
    sizes = np.empty(n + len(twice), dtype=np.int32)
    lines: list[str] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            name, u, r = names[code_l[i]], user_l[i], small[i]
            kind, p = kinds[code_l[i]], pick[i]
            identified = (
                logged_in[i] or kind in ("identify", "alias", "group") or name == "Order Completed"
            )
            uid = (
                f'"u{u:08d}"'
                if identified and not (kind == "identify" and r[0] < 30_000)
                else "null"
            )
            by_server = name == "Order Completed" and server[i]
            # The page the message was sent from (web), or the mobile context.
            if kind == "screen":
                context = app[u]
            elif by_server:
                context = '"library":{"name":"analytics-node","version":"2.1.0"}'
            else:
                if kind == "page":
                    page_name, page_cat, page_path, title = _PAGES[r[1] % len(_PAGES)]
                    if page_path == "/products/":
                        page_path += str(100000 + p[0])
                elif name in ("Product Viewed", "Product Added", "Product Removed"):
                    page_path, title = f"/products/{100000 + p[0]}", "Product - Jingzhun Shop"
                elif name in ("Checkout Started", "Order Completed"):
                    page_path, title = "/checkout", "Checkout - Jingzhun Shop"
                elif name == "Products Searched":
                    page_path, title = "/search", "Search - Jingzhun Shop"
                else:
                    page_path, title = "/c/new-arrivals", "New arrivals - Jingzhun Shop"
                page = (
                    f'"path":"{page_path}","referrer":"{_REFERRERS[referrer[i]]}",'
                    f'"title":"{title}","url":"{_SITE}{page_path}"'
                )
                context = f'{web[u]},"page":{{{page}}}'
                if campaign[i] < len(_CAMPAIGNS):
                    c_name, c_source, c_medium = _CAMPAIGNS[campaign[i]]
                    context += (
                        f',"campaign":{{"medium":"{c_medium}","name":"{c_name}",'
                        f'"source":"{c_source}"}}'
                    )
            anonymous = "" if by_server else f'"anonymousId":{anon[u]},'
            head = (
                f'{{{anonymous}"channel":"{"server" if by_server else "client"}",'
                f'"context":{{{context}}},"integrations":{{}},'
                f'"messageId":"ajs-next-{message_hex[32 * i : 32 * i + 32]}",'
                f'"originalTimestamp":"{original[i]}Z","receivedAt":"{received[i]}Z",'
                f'"sentAt":"{sent[i]}Z","timestamp":"{stamp[i]}Z","type":"{kind}",'
                f'"userId":{uid}'
            )
            # What the message says.
            if kind == "track":
                props = _track_properties(name, r, p, (product, price), i)
                tail = f',"event":"{name}","properties":{{{props}}}}}'
            elif kind == "page":
                tail = (
                    f',"category":"{page_cat}","name":"{page_name}","properties":{{{page},'
                    f'"name":"{page_name}"}}}}'
                )
            elif kind == "screen":
                screen = _SCREENS[r[1] % len(_SCREENS)]
                tail = f',"name":"{screen}","properties":{{"name":"{screen}"}}}}'
            elif kind == "identify":
                tail = f',"traits":{{{_traits(u, r)}}}}}'
            elif kind == "alias":
                tail = f',"previousId":{anon[u]}}}'
            else:
                tail = (
                    f',"groupId":"g{u % 997:05d}","traits":{{"employees":{r[1] % 500 + 5},'
                    f'"industry":"Retail","name":"Company {u % 997}","plan":"enterprise"}}}}'
                )
            line = head + tail
            lines.append(line)
            if i in twice:  # redelivered: the same message again
                lines.append(line)
            if len(lines) >= 50_000:
                text = "\n".join(lines) + "\n"
                fh.write(text)
                for j, s in enumerate(lines):
                    sizes[written + j] = len(s.encode())
                written += len(lines)
                lines = []
        if lines:
            fh.write("\n".join(lines) + "\n")
            for j, s in enumerate(lines):
                sizes[written + j] = len(s.encode())
            written += len(lines)
    counts = np.bincount(code, minlength=len(names)).tolist()
    return {
        "messages": written,
        "distinct_messages": n,
        "redelivered": len(twice),
        "bytes": int(path.stat().st_size),
        "message_bytes": {
            "mean": round(float(sizes.mean())),
            "p5": int(np.percentile(sizes, 5)),
            "p95": int(np.percentile(sizes, 95)),
            "max": int(sizes.max()),
        },
        "mix": dict(zip(names, counts, strict=True)),
        "users": n_users,
        "products": n_products,
    }


def _track_properties(
    name: str, r: list[int], p: list[int], catalogue: tuple[list[str], list[float]], i: int
) -> str:
    """A track message's properties (the inside of the object), by Segment's e-commerce spec
    for its event, or a custom event's own. ``r``: four random integers; ``p``: five products
    (indexes into ``catalogue``: each product's JSON members, and its price)."""
    product, prices = catalogue
    if name in ("Product Viewed", "Product Added", "Product Removed"):
        cart = f',"cart_id":"c{r[2]:07d}"' if name != "Product Viewed" else ""
        return (
            f'{product[p[0]]},"quantity":{r[1] % 3 + 1},"currency":"CNY","position":'
            f'{r[3] % 40 + 1},"variant":"{("Black", "White", "Red", "M", "L")[r[1] % 5]}",'
            f'"url":"{_SITE}/products/{100000 + p[0]}"{cart}'
        )
    if name == "Order Completed":
        lines = r[1] % 4 + 1
        quantity = [(r[2] >> (2 * k)) % 3 + 1 for k in range(lines)]
        price = [prices[p[k]] for k in range(lines)]
        subtotal = sum(q * x for q, x in zip(quantity, price, strict=True))
        discount = round(subtotal * 0.1, 2) if r[3] % 4 == 0 else 0.0
        shipping = 0.0 if subtotal > 99 else 10.0
        items = ",".join(
            f'{{{product[p[k]]},"quantity":{quantity[k]},"position":{k + 1},'
            f'"url":"{_SITE}/products/{100000 + p[k]}"}}'
            for k in range(lines)
        )
        coupon = ',"coupon":"SPRING10"' if discount else ""
        return (
            f'"checkout_id":"ck{i:09d}","order_id":"O{i:010d}","affiliation":"Tmall flagship",'
            f'"total":{subtotal - discount + shipping:.2f},"subtotal":{subtotal - discount:.2f},'
            f'"revenue":{subtotal - discount:.2f},"shipping":{shipping:.2f},"tax":0.00,'
            f'"discount":{discount:.2f}{coupon},"currency":"CNY","products":[{items}]'
        )
    if name in ("Checkout Started", "Cart Viewed", "Product List Viewed"):
        count = r[1] % 3 + 1 if name != "Product List Viewed" else 2
        items = ",".join(
            f'{{{product[p[k]]},"quantity":1,"position":{k + 1}}}' for k in range(count)
        )
        if name == "Product List Viewed":
            return f'"list_id":"new-arrivals","category":"New arrivals","products":[{items}]'
        if name == "Cart Viewed":
            return f'"cart_id":"c{r[2]:07d}","products":[{items}]'
        return (
            f'"order_id":"O{i:010d}","value":{r[2] % 900 + 30}.00,"revenue":'
            f'{r[2] % 900 + 30}.00,"currency":"CNY","products":[{items}]'
        )
    if name == "Products Searched":
        return f'"query":"{_QUERIES[r[1] % len(_QUERIES)]}","results":{r[2] % 200}'
    if name in ("Video Played", "Live Stream Joined"):
        return (
            f'"video_id":"v{r[2] % 5000:05d}","title":"Spring live {r[2] % 50}",'
            f'"position":{r[3] % 600},"total_length":1800,"livestream":{str(r[1] % 2 == 0).lower()},'
            f'"product_id":"{100000 + p[0]}"'
        )
    return f'"button_id":"btn-{r[2] % 40}","text":"Buy now","location":"product_detail"'


def _traits(u: int, r: list[int]) -> str:
    """An identify's traits: personal data (email, name, phone, address) and others; the
    same user's identifies agree but for ``logins``."""
    created = f"2023-{u % 12 + 1:02d}-{u % 28 + 1:02d}T{u % 24:02d}:{u % 60:02d}:07.000"
    first, last = _FIRST[u % len(_FIRST)], _LAST[(u // 10) % len(_LAST)]
    city, state, postal = _CITIES[u % len(_CITIES)]
    phone = f',"phone":"1{38 + u % 60}{u % 100_000_000:08d}"' if r[1] % 5 < 2 else ""
    return (
        f'"email":"{first.lower()}.{last.lower()}{u}@{_MAIL[u % len(_MAIL)]}",'
        f'"name":"{first} {last}","firstName":"{first}","lastName":"{last}"{phone},'
        f'"plan":"{_PLANS[u % len(_PLANS)]}","createdAt":"{created}Z","logins":{r[2] % 300},'
        f'"address":{{"street":"{r[3] % 999 + 1} Huaihai Rd","city":"{city}","state":"{state}",'
        f'"postalCode":"{postal}","country":"CN"}}'
    )


# -- Taobao UserBehavior ---------------------------------------------------------------------


def write_taobao(path: Path, n: int, seed: int = 17) -> dict[str, Any]:
    """Write ``n`` rows in Taobao UserBehavior's format (no header) to ``path``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    # The published file has ~100 rows a user, users in ascending order, each user's rows in
    # time order; ~4.2M items in ~9.4k categories, their popularity heavy-tailed.
    n_users = max(100, n // 100)
    weight = rng.lognormal(0.0, 1.0, n_users)
    user = np.sort(rng.choice(n_users, n, p=weight / weight.sum()))
    ts = rng.integers(1_511_539_200, 1_512_316_800, n)  # 2017-11-25 00:00 to 12-04 00:00 +08
    order = np.lexsort((ts, user))
    rank = rng.zipf(1.25, n) % 4_162_024
    item = (rank * 2_654_435_761) % 5_163_070 + 1
    category = (item * 40_503) % 9_439 * 547 + 2_333
    kind = rng.choice(4, n, p=[0.8955, 0.0553, 0.0290, 0.0202])
    table = pa.table(
        {
            "user_id": (user[order] * 7 + 1).astype(np.int64),
            "item_id": item[order].astype(np.int64),
            "category_id": category[order].astype(np.int64),
            "behavior_type": pa.array(np.array(["pv", "cart", "fav", "buy"])[kind[order]]),
            "timestamp": ts[order].astype(np.int64),
        }
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    shares = np.bincount(kind, minlength=4) / n
    return {
        "rows": n,
        "users": n_users,
        "bytes": int(path.stat().st_size),
        "mix": dict(zip(("pv", "cart", "fav", "buy"), np.round(shares, 4).tolist(), strict=True)),
    }


# -- the benchmark -----------------------------------------------------------------------------


def data(rows: int) -> dict[str, Path]:
    """The cached files for ``rows`` (made in a child process on first use)."""
    folder = DATA / f"ingest-logs-{rows}"
    files = {
        "segment": folder / "segment.jsonl",
        "taobao": folder / "UserBehavior.csv",
        "meta": folder / "meta.json",
    }
    if all(p.exists() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    out = run(
        f"""
        import sys, json
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from bench_ingest_logs import write_segment, write_taobao
        t = time.perf_counter()
        seg = write_segment(Path({str(files["segment"])!r}), {rows})
        seg["write_seconds"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        tb = write_taobao(Path({str(files["taobao"])!r}), {rows})
        tb["write_seconds"] = round(time.perf_counter() - t, 1)
        _out.update(segment=seg, taobao=tb)
        """,
        timeout=3600,
    )
    meta = {"segment": out["segment"], "taobao": out["taobao"]}
    files["meta"].write_text(json.dumps(meta, indent=2) + "\n")
    print(f"   data for {rows:,} made in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return files


def ingest(path: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ingest of ``path`` into a new store, in a child process."""
    busy0, own0 = busy_seconds(), children_cpu()
    with tempfile.TemporaryDirectory(prefix="jz-bench-logs-") as tmp:
        out = run(
            f"""
            from jingzhun.workspace import Workspace
            ws = Workspace.open({str(Path(tmp) / "bench.duckdb")!r})
            r = ws.ingest.files("events", [{str(path)!r}], **{options or {}!r})
            _out.update(r.to_dict())
            _out["batch_seconds"] = r.seconds  # the batch alone; "seconds" is the process's
            ws.close()
            """
        )
    # Other processes on the machine slow a run down: say how busy it was besides us.
    out["cpu_seconds"] = round(children_cpu() - own0, 1)
    out["other_cpu_seconds"] = round(max(busy_seconds() - busy0 - out["cpu_seconds"], 0.0), 1)
    print(
        f"   {path.name}: {out['rows_read']:,} rows in {out['batch_seconds']:.1f}s, "
        f"peak {out['peak_rss_mb']:.0f} MB, others {out['other_cpu_seconds']}s CPU",
        file=sys.stderr,
        flush=True,
    )
    return out


# The Segment mapping alone (jingzhun.ingest.segment's events and users SELECTs) over the whole
# file at once, read by DuckDB: no block reading, validation or storage. What the mapping costs
# at DuckDB's full parallelism, beside what the ingest path spends around it.
MAPPING_ONLY = """
import duckdb
from jingzhun.ingest import segment
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
t = time.perf_counter()
con.execute(
    "CREATE TABLE m AS SELECT row_number() OVER () AS _line, NULL::VARCHAR AS _error, line AS t "
    "FROM read_csv({path!r}, columns={{'line': 'VARCHAR'}}, delim=chr(1), quote='', escape='', "
    "header=false, auto_detect=false)"
)
_out["read_seconds"] = time.perf_counter() - t
t = time.perf_counter()
con.execute(f"CREATE TEMP TABLE ev AS {{segment.events_sql('m')}}")
_out["events_sql_seconds"] = time.perf_counter() - t
t = time.perf_counter()
con.execute(f"CREATE TEMP TABLE us AS {{segment.users_sql('m')}}")
_out["users_sql_seconds"] = time.perf_counter() - t
_out["map_seconds"] = _out["events_sql_seconds"] + _out["users_sql_seconds"]
_out["messages"] = con.execute("SELECT count(*) FROM m").fetchone()[0]
_out["event_rows"] = con.execute("SELECT count(*) FROM ev").fetchone()[0]
_out["messages_per_s"] = round(_out["messages"] / _out["map_seconds"])
"""


def main(rows: int = ROWS, repeat: int = 2) -> None:
    """Measure the three paths at ``rows`` rows (messages) each, best of ``repeat``."""
    files = data(rows)
    meta = json.loads(files["meta"].read_text())
    csv = shop_files(rows)["events_csv"]
    runs: dict[str, list[dict[str, Any]]] = {
        "csv": [],
        "segment": [],
        "taobao": [],
        "segment_mapping_only": [],
    }
    # Interleaved, so that a slow spell of the machine does not fall on one path only.
    for _ in range(repeat):
        runs["csv"].append(ingest(csv))
        runs["segment"].append(ingest(files["segment"]))
        runs["taobao"].append(ingest(files["taobao"], TAOBAO))
        runs["segment_mapping_only"].append(run(MAPPING_ONLY.format(path=str(files["segment"]))))
    results = {
        k: best(v, "map_seconds" if "mapping" in k else "batch_seconds") for k, v in runs.items()
    }
    seg, csv_r, tb = results["segment"], results["csv"], results["taobao"]
    messages = meta["segment"]["messages"]
    seg["messages"] = messages
    seg["messages_per_s"] = round(messages / seg["batch_seconds"])
    seg["mb_per_s"] = round(meta["segment"]["bytes"] / 2**20 / seg["batch_seconds"], 1)
    for r in (seg, csv_r, tb):
        r["rows_per_s"] = round(r["rows_read"] / r["batch_seconds"])
    ratio = tb["rows_per_s"] / csv_r["rows_per_s"]
    met = {
        "segment_messages_per_s": seg["messages_per_s"] >= TARGET["segment_messages_per_s"],
        "taobao_vs_csv": ratio >= TARGET["taobao_vs_csv"],
    }
    save(
        "ingest_logs",
        {
            "workload": (
                f"{messages:,} Segment messages (JSON Lines, {meta['segment']['bytes'] / 2**20:,.0f}"
                f" MB), {rows:,} Taobao UserBehavior rows with its recipe, and the first "
                f"{rows:,} events of the shared simulation as a CSV with a header (baseline), "
                "each into a new store"
            ),
            "src_commit": src_version(),
            "target": TARGET,
            "data": meta,
            "results": results,
            "segment_messages_per_s": seg["messages_per_s"],
            "segment_vs_csv_rows": round(seg["rows_per_s"] / csv_r["rows_per_s"], 3),
            "taobao_vs_csv": round(ratio, 3),
            "met": met,
            "note": (
                "messages/s counts lines read (an order's message is one row per product, so "
                "rows_read is higher); batch_seconds is the batch alone, seconds the whole "
                "child process; every path validates, dedupes, quarantines and stores. "
                "Segment also maps each message and fills users and pii from identify calls; "
                "Taobao derives order ids and fills items from its category column. "
                "other_cpu_seconds: CPU the rest of the machine used during a run. "
                "segment_mapping_only: the events and users SELECTs of jingzhun.ingest.segment "
                "over the whole file read by DuckDB (no validation or storage), for where the "
                "ingest's time goes."
            ),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="messages and rows per path")
    parser.add_argument("--repeat", type=int, default=2, help="runs per path (best is kept)")
    args = parser.parse_args()
    main(args.rows, args.repeat)
