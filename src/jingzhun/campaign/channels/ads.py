"""Ad audiences: a campaign's users as a hashed customer list for Google or Meta.

Google Ads Customer Match and Meta custom audiences match uploaded customer lists on the
SHA-256 of each identifier after normalising it, so the export never writes a plain email
address or phone number: each cell is the lowercase hex SHA-256 of the normalised value.

Normalisation follows each platform's published rules:

* email, both platforms: trim leading and trailing whitespace, lowercase. Dots and
  ``+suffix`` tags stay: neither platform asks for their removal in general.
  Google only, for ``gmail.com`` and ``googlemail.com`` addresses: every period before the
  ``@`` is removed ("Remove all periods (.) that precede the domain name in gmail.com and
  googlemail.com email addresses", Google Ads API, *Normalize and hash user-provided data*;
  the Customer Match guide adds that addresses with the periods are still accepted). The
  ``+`` tag is kept there too: Google's rule names periods only.
* phone: parsed with ``phonenumbers`` against ``[privacy] default_region`` (for numbers
  written without a country code) and kept only when it is a valid number. Google wants
  E.164 with its ``+`` (``+8613812345678``); Meta wants the digits with the country code and
  no ``+`` (``8613812345678``, "Hashing and Normalizing Data" in Meta's Marketing API docs).
  A number that does not parse or is not valid is dropped, never guessed at.

The file is a CSV with the platform's column names (``Email,Phone`` for Google's Customer
Match upload, ``email,phone`` for Meta's customer list): one row per user with whichever
identifiers are valid, an empty cell for the other. A user with neither is left out and
counted. The file is written through a temporary file in the same folder and renamed into
place, so a failure leaves no half-written audience.

Examples
--------
>>> normalize_email("  Ann.Lee+x@Gmail.com ")
'ann.lee+x@gmail.com'
>>> normalize_email("Ann.Lee+x@Gmail.com", platform="google")
'annlee+x@gmail.com'
>>> normalize_phone("138 1234 5678", default_region="CN", platform="google")
'+8613812345678'
>>> normalize_phone("+86 138-1234-5678", default_region="CN", platform="meta")
'8613812345678'
>>> normalize_phone("12345", default_region="CN", platform="meta") is None
True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd
import phonenumbers

from jingzhun.contracts.results import Result
from jingzhun.errors import InputError
from jingzhun.outputs import atomic_write, check_output_path

__all__ = [
    "HEADERS",
    "PLATFORMS",
    "ExportResult",
    "export_audience",
    "normalize_email",
    "normalize_phone",
    "sha256_hex",
]

Platform = Literal["google", "meta"]

#: The platforms an audience can be exported for.
PLATFORMS: tuple[str, ...] = ("google", "meta")

#: The CSV header (email column, phone column) each platform's upload expects.
HEADERS: dict[str, tuple[str, str]] = {
    "google": ("Email", "Phone"),  # Customer Match: English headers, capitalised
    "meta": ("email", "phone"),  # custom audience customer list identifiers
}

#: Domains whose local part Google normalises without periods (Gmail ignores them).
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

#: The columns ``export_audience`` reads.
_COLUMNS = ("user_id", "email", "phone")


@dataclass
class ExportResult(Result):
    """What an audience export wrote.

    Attributes
    ----------
    platform : str
        ``google`` or ``meta``.
    out : str
        The file written (absolute, links resolved).
    users : int
        Rows written: users with at least one valid identifier.
    emails, phones : int
        Hashed emails and phone numbers written.
    bad_emails, bad_phones : int
        Values present (not empty) but not a usable email or a valid phone number: counted,
        never written.
    no_identifier : int
        Users left out because they have neither a valid email nor a valid phone number.
    """

    platform: str
    out: str
    users: int
    emails: int
    phones: int
    bad_emails: int
    bad_phones: int
    no_identifier: int


def _check_platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise InputError(
            f"platform {platform!r} is not an ad platform jingzhun exports for",
            hint=f"use one of {', '.join(PLATFORMS)}",
            param="platform",
        )
    return platform


def _check_region(default_region: str) -> str:
    """The region in the upper case ``phonenumbers`` wants; refused when it does not know it."""
    region = default_region.upper() if isinstance(default_region, str) else ""
    if region not in phonenumbers.SUPPORTED_REGIONS:
        # A config setting, not a call parameter: named as jingzhun.toml spells it (no param).
        raise InputError(
            f"[privacy] default_region {default_region!r} is not a region phonenumbers knows",
            hint="set it to a two-letter ISO 3166 code such as CN or US",
        )
    return region


def normalize_email(value: str, *, platform: Platform | None = None) -> str | None:
    """An email address as the ad platforms hash it, or None when it is not an address.

    Parameters
    ----------
    value : str
        The address as stored. Anything but a string gives None.
    platform : {'google', 'meta'}, optional
        With ``google``, the periods before the ``@`` of a ``gmail.com`` or
        ``googlemail.com`` address are removed (Google's rule); otherwise only trimming and
        lowercasing apply, which is what both platforms ask for every address.

    Returns
    -------
    str or None
        The trimmed, lowercased address; None without exactly one ``@``, with an empty local
        part or domain, or with whitespace inside.

    Examples
    --------
    >>> normalize_email(" Ann.Lee@Example.COM ")
    'ann.lee@example.com'
    >>> normalize_email("ann lee@example.com") is None
    True
    """
    if platform is not None:
        _check_platform(platform)
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    local, at, domain = text.partition("@")
    if not at or not local or not domain or "@" in domain:
        return None
    if any(ch.isspace() for ch in text):
        return None
    if platform == "google" and domain in _GMAIL_DOMAINS:
        # Google Ads' formatting guidelines for hashed user data (Customer Match, enhanced
        # conversions): "Remove all periods (.) that precede the domain name in gmail.com and
        # googlemail.com email addresses". Only periods: the '+' tag and the domain stay.
        # Meta documents no such rule, so a Meta audience keeps the periods.
        local = local.replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def normalize_phone(value: str, *, default_region: str, platform: Platform) -> str | None:
    """A phone number as ``platform`` hashes it, or None when it is not a valid number.

    Parameters
    ----------
    value : str
        The number as stored: international (``+86 138-1234-5678``, ``0086 13812345678``)
        or national in ``default_region`` (``138 1234 5678``). Anything but a string gives
        None.
    default_region : str
        ISO 3166 code of the country a number without country code belongs to
        (``[privacy] default_region``).
    platform : {'google', 'meta'}
        ``google``: E.164 with its ``+``; ``meta``: the same digits without the ``+``.

    Returns
    -------
    str or None
        The number, or None when ``phonenumbers`` cannot parse it or finds it invalid.

    Raises
    ------
    InputError
        An unknown ``platform`` or ``default_region``.

    Examples
    --------
    >>> normalize_phone("+1 (650) 253-0000", default_region="CN", platform="google")
    '+16502530000'
    >>> normalize_phone("0086 13812345678", default_region="CN", platform="meta")
    '8613812345678'
    """
    _check_platform(platform)
    return _phone(value, _check_region(default_region), platform)


def _phone(value: Any, region: str, platform: str) -> str | None:
    """:func:`normalize_phone` with ``region`` and ``platform`` already checked."""
    if not isinstance(value, str):
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if platform == "google" else e164.removeprefix("+")


def sha256_hex(value: str) -> str:
    """The lowercase hex SHA-256 of ``value``'s UTF-8 bytes.

    Examples
    --------
    >>> sha256_hex("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _present(column: pd.Series) -> pd.Series:
    """The column as trimmed text, missing (NA) where the value is absent or blank."""
    text = column.astype("string").str.strip()
    return text.mask(text == "")


def _normalized(text: pd.Series, normalize: Any) -> pd.Series:
    """``normalize`` applied to the present values; None where absent or unusable.

    A ``.map`` calls Python once per value: ``phonenumbers`` parses one number at a time and
    ``hashlib`` hashes one string at a time, so there is no column-wide form to call. Using
    the same scalar function for emails keeps one definition of a normalised address.
    """
    out = pd.Series(None, index=text.index, dtype=object)
    present = text.notna()
    out[present] = text[present].map(normalize, na_action="ignore").astype(object)
    return out


def _hashed(values: pd.Series) -> pd.Series:
    """The SHA-256 of each normalised value; None stays None."""
    return values.map(sha256_hex, na_action="ignore")


def _check_rows(rows: pd.DataFrame) -> None:
    missing = [c for c in _COLUMNS if c not in getattr(rows, "columns", ())]
    if missing:
        raise InputError(
            f"rows lacks the column(s) {', '.join(missing)}",
            hint="pass a table with user_id, email and phone",
            param="rows",
        )
    dupes = rows["user_id"].duplicated()
    if dupes.any():
        raise InputError(
            f"rows has {int(dupes.sum())} repeated user_id value(s), "
            f"first {rows['user_id'][dupes].iloc[0]!r}",
            hint="pass one row per user",
            param="rows",
        )


def _write_csv(frame: pd.DataFrame, fh: IO[str]) -> None:
    """Write ``frame`` as CSV (header first, empty cells for missing values) to ``fh``."""
    frame.to_csv(fh, index=False, lineterminator="\n")


def export_audience(
    rows: pd.DataFrame,
    *,
    platform: Platform,
    default_region: str,
    out: Path,
    store_path: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Write ``rows`` as a hashed customer list for ``platform`` to the CSV file ``out``.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per user with columns ``user_id``, ``email`` and ``phone`` (text; missing
        or blank where unknown). ``user_id`` is not written.
    platform : {'google', 'meta'}
        Google Customer Match (columns ``Email,Phone``, phones as E.164 with ``+``) or a
        Meta custom audience (columns ``email,phone``, phones as digits without ``+``).
    default_region : str
        ISO 3166 code for phone numbers written without a country code
        (``[privacy] default_region``).
    out : pathlib.Path
        The CSV file to write or replace; its folder must exist.
    store_path : str or path-like, optional
        The store the audience comes from: ``out`` may then not be the store, its
        write-ahead log or lie in its model folder.

    Returns
    -------
    ExportResult
        The file written and what went into it, what was unusable and who was left out.

    Raises
    ------
    InputError
        An unknown ``platform`` or ``[privacy] default_region``; ``rows`` without the
        columns or with a user twice; ``out`` a folder, in a folder that does not exist, or
        not writable. Nothing is written then, and a failure while writing leaves an earlier
        file at ``out`` as it was.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> rows = pd.DataFrame({"user_id": ["u1", "u2"], "email": [" A@B.com", None],
    ...                      "phone": [None, "12345"]})
    >>> res = export_audience(rows, platform="meta", default_region="CN",
    ...                       out=folder / "aud.csv")
    >>> res.users, res.emails, res.phones, res.bad_phones, res.no_identifier
    (1, 1, 0, 1, 1)
    >>> (folder / "aud.csv").read_text().splitlines()[0]
    'email,phone'
    """
    _check_platform(platform)
    region = _check_region(default_region)
    _check_rows(rows)
    target = _output(out, store_path)

    rows = rows.reset_index(drop=True)  # the columns below align on a plain 0..n-1 index
    email_text = _present(rows["email"])
    phone_text = _present(rows["phone"])
    emails = _normalized(email_text, partial(normalize_email, platform=platform))
    phones = _normalized(phone_text, partial(_phone, region=region, platform=platform))
    has_email, has_phone = emails.notna(), phones.notna()
    keep = has_email | has_phone

    email_header, phone_header = HEADERS[platform]
    frame = pd.DataFrame({email_header: _hashed(emails[keep]), phone_header: _hashed(phones[keep])})
    try:
        with atomic_write(target, "w", flag="out", encoding="utf-8", newline="") as fh:
            _write_csv(frame, fh)
    except InputError as exc:
        raise InputError(exc.message, hint=exc.hint, param="out") from exc.__cause__

    return ExportResult(
        platform=platform,
        out=str(target),
        users=int(keep.sum()),
        emails=int(has_email.sum()),
        phones=int(has_phone.sum()),
        bad_emails=int((email_text.notna() & ~has_email).sum()),
        bad_phones=int((phone_text.notna() & ~has_phone).sum()),
        no_identifier=int((~keep).sum()),
    )


def _output(out: Path, store_path: str | os.PathLike[str] | None) -> Path:
    """``out`` checked as a file to write (its folder must exist); errors carry ``param``."""
    try:
        return check_output_path(out, flag="out", store_path=store_path, what="the audience")
    except InputError as exc:
        raise InputError(exc.message, hint=exc.hint, param="out") from None
