"""Realistic personal data for simulated users: names, emails, phones, streets, gender.

Most names are Chinese (surname and given name drawn by frequency), some English; emails are
built from the romanised name and a unique suffix, so every user has a distinct address. A few
emails are malformed on purpose (``name#domain``): ingest must quarantine those rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.synth import vocab
from jingzhun.synth.strings import choose, fixed_width, join, scramble
from jingzhun.synth.world import CATEGORY_NAMES

#: Share of user records with a malformed email (for the quarantine to catch).
BAD_EMAIL_RATE = 0.004


def people(n: int, rng: np.random.Generator, prefs: np.ndarray) -> dict[str, pa.Array]:
    # Gender leans on tastes a little, as it does in shop data; 4% undisclosed.
    lean = (
        prefs[:, CATEGORY_NAMES.index("beauty")]
        + prefs[:, CATEGORY_NAMES.index("baby")]
        - prefs[:, CATEGORY_NAMES.index("electronics")]
    )
    p_female = np.clip(0.5 + 0.6 * lean, 0.1, 0.9)
    female = rng.random(n) < p_female
    gender_code = np.where(rng.random(n) < 0.04, 2, np.where(female, 0, 1))
    gender = choose(["F", "M", "unknown"], gender_code).dictionary_decode()

    chinese = rng.random(n) < 0.88
    sw = np.array([s[2] for s in vocab.SURNAMES])
    sur = rng.choice(len(vocab.SURNAMES), n, p=sw / sw.sum())
    giv = rng.integers(0, len(vocab.GIVEN), n)
    first = rng.integers(0, len(vocab.EN_FIRST), n)
    last = rng.integers(0, len(vocab.EN_LAST), n)
    zh_name = join(
        choose([s[0] for s in vocab.SURNAMES], sur), choose([g[0] for g in vocab.GIVEN], giv)
    )
    en_name = join(choose(list(vocab.EN_FIRST), first), choose(list(vocab.EN_LAST), last), sep=" ")
    is_zh = pa.array(chinese)
    name = pc.if_else(is_zh, zh_name, en_name)

    zh_local = join(
        choose([s[1] for s in vocab.SURNAMES], sur), choose([g[1] for g in vocab.GIVEN], giv)
    )
    en_local = join(
        choose([f.lower() for f in vocab.EN_FIRST], first),
        choose([x.lower() for x in vocab.EN_LAST], last),
        sep=".",
    )
    local = pc.if_else(is_zh, zh_local, en_local)
    suffix = fixed_width(
        "", scramble(np.arange(n), 29, bits=28), 7, base=16
    )  # bijective: unique per user
    dw = np.array([d[1] for d in vocab.EMAIL_DOMAINS])
    domain = choose([d[0] for d in vocab.EMAIL_DOMAINS], rng.choice(len(dw), n, p=dw / dw.sum()))
    bad = rng.random(n) < BAD_EMAIL_RATE
    at = choose(["@", "#"], bad.astype(np.int64))
    email = join(local, ".", suffix, at, domain)

    prefix = choose(list(vocab.PHONE_PREFIXES), rng.integers(0, len(vocab.PHONE_PREFIXES), n))
    phone = join(prefix, fixed_width("", rng.integers(0, 10**8, n), 8))

    district = choose(list(vocab.DISTRICTS), rng.integers(0, len(vocab.DISTRICTS), n))
    road = choose(list(vocab.ROADS), rng.integers(0, len(vocab.ROADS), n))
    number = fixed_width("No.", rng.integers(1, 999, n), 3)
    street = join(district, road, number, sep=" ")
    return {"gender": gender, "name": name, "email": email, "phone": phone, "street": street}
