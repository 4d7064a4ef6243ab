"""Ad audiences: normalisation per platform, hashed CSVs for Google and Meta, safe writes.

Every expected digest is the SHA-256 of a normalised string written out by hand here, so a
wrong normalisation cannot pass by hashing its own output. Google's email rule for Gmail
follows its formatting guidelines for hashed user data (Google Ads API, "Normalize and hash
user-provided data"): "Remove all periods (.) that precede the domain name in gmail.com and
googlemail.com email addresses" (periods only: the ``+`` tag and the domain stay). Meta asks
for trimming and lowercasing only, and phone digits with the country code and no ``+``.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import string
from pathlib import Path
from typing import IO

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jingzhun.campaign.channels import ads
from jingzhun.campaign.channels.ads import (
    ExportResult,
    export_audience,
    normalize_email,
    normalize_phone,
    sha256_hex,
)
from jingzhun.errors import InputError


def h(text: str) -> str:
    """The digest of a normalised value written out by hand."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


# --- email ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "platform", "expected"),
    [
        ("  Ann.Lee@Example.com  ", "meta", "ann.lee@example.com"),
        ("  Ann.Lee@Example.com  ", "google", "ann.lee@example.com"),  # not Gmail: dots stay
        ("\tANN@EXAMPLE.CN\n", None, "ann@example.cn"),
        # Gmail: Google drops the periods of the local part, keeps the '+' tag; Meta keeps all.
        ("Ann.Lee+x@Gmail.com", "google", "annlee+x@gmail.com"),
        ("Ann.Lee+x@Gmail.com", "meta", "ann.lee+x@gmail.com"),
        ("Ann.Lee+x@Gmail.com", None, "ann.lee+x@gmail.com"),
        ("J.O.E@GoogleMail.com", "google", "joe@googlemail.com"),  # domain is not rewritten
        ("a.b+c.d@gmail.com", "google", "ab+cd@gmail.com"),  # all periods before the '@'
        ("ann.lee@mail.gmail.com", "google", "ann.lee@mail.gmail.com"),  # only the two domains
    ],
)
def test_normalize_email(raw: str, platform: str | None, expected: str) -> None:
    assert normalize_email(raw, platform=platform) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ann.lee",
        "@example.com",
        "ann@",
        "ann lee@example.com",
        "a@b@example.com",
        "ann@exa mple.com",
        None,
        42,
        float("nan"),
    ],
)
@pytest.mark.parametrize("platform", ["google", "meta"])
def test_normalize_email_refuses_what_is_not_an_address(raw: object, platform: str) -> None:
    assert normalize_email(raw, platform=platform) is None  # type: ignore[arg-type]


def test_a_gmail_local_part_of_only_periods_is_not_an_address() -> None:
    assert normalize_email("..@gmail.com", platform="google") is None
    assert normalize_email("..@gmail.com", platform="meta") == "..@gmail.com"


def test_normalize_email_refuses_an_unknown_platform() -> None:
    with pytest.raises(InputError) as err:
        normalize_email("a@b.com", platform="tiktok")  # type: ignore[arg-type]
    assert err.value.param == "platform"
    assert "platform 'tiktok'" in str(err.value)


_local = st.text(alphabet=string.ascii_letters + string.digits + ".+_-", min_size=1)
_domain = st.sampled_from(["gmail.com", "GoogleMail.com", "example.com", "Shop.Example.CN"])


@given(local=_local, domain=_domain, pad=st.sampled_from(["", " ", "\t", " \n "]))
def test_normalized_emails_are_stable_lowercase_and_trimmed(
    local: str, domain: str, pad: str
) -> None:
    for platform in ("google", "meta"):
        out = normalize_email(f"{pad}{local}@{domain}{pad}", platform=platform)  # type: ignore[arg-type]
        if out is None:  # only a Gmail local part of periods alone may vanish
            assert platform == "google" and set(local) == {"."}
            continue
        assert out == out.strip().lower()
        assert normalize_email(out, platform=platform) == out  # type: ignore[arg-type]
        assert out.endswith("@" + domain.lower())


# --- phone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "google", "meta"),
    [
        ("138 1234 5678", "CN", "+8613812345678", "8613812345678"),  # national, region CN
        ("+86 138-1234-5678", "CN", "+8613812345678", "8613812345678"),
        ("0086 13812345678", "CN", "+8613812345678", "8613812345678"),  # CN's 00 prefix
        ("+86 138-1234-5678", "US", "+8613812345678", "8613812345678"),  # region not used
        ("+1 (650) 253-0000", "CN", "+16502530000", "16502530000"),
        ("(650) 253-0000", "US", "+16502530000", "16502530000"),
        ("  138 1234 5678  ", "cn", "+8613812345678", "8613812345678"),  # region in any case
    ],
)
def test_normalize_phone(raw: str, region: str, google: str, meta: str) -> None:
    assert normalize_phone(raw, default_region=region, platform="google") == google
    assert normalize_phone(raw, default_region=region, platform="meta") == meta


@pytest.mark.parametrize(
    "raw", ["12345", "", "   ", "abc", "(650) 253-0000", "+86 12", "++--", None, 13812345678]
)
@pytest.mark.parametrize("platform", ["google", "meta"])
def test_normalize_phone_never_guesses(raw: object, platform: str) -> None:
    # "(650) 253-0000" read in CN is not a valid Chinese number: dropped, not sent to the US.
    assert normalize_phone(raw, default_region="CN", platform=platform) is None  # type: ignore[arg-type]


def test_normalize_phone_refuses_an_unknown_region_and_platform() -> None:
    with pytest.raises(InputError, match=r"\[privacy\] default_region 'XX'"):
        normalize_phone("138 1234 5678", default_region="XX", platform="google")
    with pytest.raises(InputError) as err:
        normalize_phone("138 1234 5678", default_region="CN", platform="linkedin")  # type: ignore[arg-type]
    assert err.value.param == "platform"


@given(st.text(alphabet="0123456789 +-()", max_size=20))
def test_meta_phones_are_google_phones_without_the_plus(raw: str) -> None:
    google = normalize_phone(raw, default_region="CN", platform="google")
    meta = normalize_phone(raw, default_region="CN", platform="meta")
    if google is None:
        assert meta is None
    else:
        assert google == "+" + meta and meta.isdigit()  # type: ignore[operator]


def test_sha256_hex() -> None:
    # The FIPS 180-2 test vector for "abc", and the UTF-8 bytes for non-ASCII text.
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex("ann.lee@example.com") == hashlib.sha256(b"ann.lee@example.com").hexdigest()
    assert sha256_hex("zoë@example.com") == hashlib.sha256("zoë@example.com".encode()).hexdigest()


# --- export -----------------------------------------------------------------------------


def users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5", "u6", "u7"],
            "email": [
                "  Ann.Lee+x@Gmail.com ",  # valid; Gmail
                None,  # absent
                "Bob@Example.com",  # valid
                "not-an-email",  # bad, and the phone is blank: left out
                "",  # absent (blank), phone missing: left out, nothing counted bad
                "Carol@Example.COM",  # valid
                "dan@",  # bad, but the phone is valid
            ],
            "phone": [
                "138 1234 5678",  # national CN
                "+1 (650) 253-0000",  # US, international
                "12345",  # bad
                "   ",  # absent (blank)
                None,  # absent
                "0086 13812345678",  # international with CN's 00 prefix
                "+86 138-1234-5678",
            ],
        },
        index=[10, 7, 7, 3, 0, 99, 5],  # an index that is neither sorted nor unique
    )


def test_google_customer_match_csv(tmp_path: Path) -> None:
    out = tmp_path / "google.csv"
    res = export_audience(users(), platform="google", default_region="CN", out=out)

    assert read_csv(out) == [
        ["Email", "Phone"],
        [h("annlee+x@gmail.com"), h("+8613812345678")],
        ["", h("+16502530000")],
        [h("bob@example.com"), ""],
        [h("carol@example.com"), h("+8613812345678")],
        ["", h("+8613812345678")],
    ]
    assert isinstance(res, ExportResult)
    assert res.to_dict() == {
        "platform": "google",
        "out": str(out.resolve()),
        "users": 5,
        "emails": 3,
        "phones": 4,
        "bad_emails": 2,
        "bad_phones": 1,
        "no_identifier": 2,
    }


def test_meta_custom_audience_csv(tmp_path: Path) -> None:
    out = tmp_path / "meta.csv"
    res = export_audience(users(), platform="meta", default_region="CN", out=out)

    assert read_csv(out) == [
        ["email", "phone"],
        [h("ann.lee+x@gmail.com"), h("8613812345678")],  # Meta keeps Gmail's periods
        ["", h("16502530000")],
        [h("bob@example.com"), ""],
        [h("carol@example.com"), h("8613812345678")],
        ["", h("8613812345678")],
    ]
    assert (res.users, res.emails, res.phones) == (5, 3, 4)
    assert (res.bad_emails, res.bad_phones, res.no_identifier) == (2, 1, 2)


@pytest.mark.parametrize("platform", ["google", "meta"])
def test_no_plain_or_unusable_value_is_written(tmp_path: Path, platform: str) -> None:
    out = tmp_path / "aud.csv"
    export_audience(users(), platform=platform, default_region="CN", out=out)  # type: ignore[arg-type]
    text = out.read_text(encoding="utf-8")
    cells = {c for row in read_csv(out)[1:] for c in row if c}
    assert all(len(c) == 64 and set(c) <= set("0123456789abcdef") for c in cells)
    assert "@" not in text and "+" not in text and "u1" not in text
    for unusable in ("not-an-email", "dan@", "12345", "+8612345", "8612345", "", "   "):
        assert h(unusable) not in text


def test_users_without_any_identifier_give_a_header_only_file(tmp_path: Path) -> None:
    rows = pd.DataFrame({"user_id": ["a", "b"], "email": ["nope", None], "phone": ["1", pd.NA]})
    out = tmp_path / "empty.csv"
    res = export_audience(rows, platform="meta", default_region="CN", out=out)
    assert read_csv(out) == [["email", "phone"]]
    assert (res.users, res.emails, res.phones) == (0, 0, 0)
    assert (res.bad_emails, res.bad_phones, res.no_identifier) == (1, 1, 2)


def test_an_export_replaces_an_earlier_file(tmp_path: Path) -> None:
    out = tmp_path / "aud.csv"
    out.write_text("old\n")
    export_audience(users(), platform="google", default_region="CN", out=out)
    assert read_csv(out)[0] == ["Email", "Phone"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aud.csv"]


def test_a_missing_folder_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "aud.csv"
    with pytest.raises(InputError) as err:
        export_audience(users(), platform="google", default_region="CN", out=out)
    assert err.value.param == "out"
    assert str(err.value).startswith("out ")
    assert "does not exist" in str(err.value)
    assert not out.exists() and not out.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_as_out_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder") as err:
        export_audience(users(), platform="meta", default_region="CN", out=tmp_path)
    assert err.value.param == "out"
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "aud.csv"
    out.write_text("old\n")

    def half_then_full_disk(frame: pd.DataFrame, fh: IO[str]) -> None:
        fh.write("Email,Phone\n" + frame.iloc[0, 0][:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ads, "_write_csv", half_then_full_disk)
    with pytest.raises(InputError, match="No space left") as err:
        export_audience(users(), platform="google", default_region="CN", out=out)
    assert err.value.param == "out"
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aud.csv"]


def test_the_store_itself_is_refused_as_out(tmp_path: Path) -> None:
    store = tmp_path / "shop.duckdb"
    store.write_bytes(b"")
    with pytest.raises(InputError, match="the store itself") as err:
        export_audience(users(), platform="meta", default_region="CN", out=store, store_path=store)
    assert err.value.param == "out"


@pytest.mark.parametrize(
    ("kwargs", "param", "fragment"),
    [
        ({"platform": "tiktok", "default_region": "CN"}, "platform", "platform 'tiktok'"),
        ({"platform": "google", "default_region": "XX"}, None, "[privacy] default_region 'XX'"),
        ({"platform": "google", "default_region": ""}, None, "[privacy] default_region ''"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, str], param: str | None, fragment: str
) -> None:
    with pytest.raises(InputError) as err:
        export_audience(users(), out=tmp_path / "aud.csv", **kwargs)  # type: ignore[arg-type]
    assert err.value.param == param
    assert fragment in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        (pd.DataFrame({"user_id": ["a"], "email": ["a@b.com"]}), "lacks the column(s) phone"),
        (
            pd.DataFrame({"user_id": ["a", "a"], "email": ["x@y.com", None], "phone": [None] * 2}),
            "1 repeated user_id value(s), first 'a'",
        ),
    ],
)
def test_bad_rows_are_refused(tmp_path: Path, rows: pd.DataFrame, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        export_audience(rows, platform="meta", default_region="CN", out=tmp_path / "a.csv")
    assert err.value.param == "rows"
    assert fragment in str(err.value)
    assert list(tmp_path.iterdir()) == []
