"""The campaign spec: every problem named by its key, templates read beside the spec."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from jingzhun.campaign.spec import CampaignSpec, load_spec, spec_from_json, stored_spec
from jingzhun.errors import InputError

GOOD = """
name = "spring"
channel = "email"
[[variants]]
name = "a"
subject = "Hi"
template = "a.txt"
"""


def write(tmp_path: Path, text: str, template: str | None = "Hello {{ first_name }}") -> Path:
    if template is not None:
        (tmp_path / "a.txt").write_text(template, encoding="utf-8")
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_spec_reads_its_template_beside_it(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.variants[0].body == "Hello {{ first_name }}"
    assert spec.control.share == 0.2 and spec.exclude.no_consent and spec.exclude.suppressed
    assert spec.offer.conversion_window_days == 7
    # What the store keeps reads back the same.
    assert stored_spec(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[control]\nshare = 0\n", "[control] share must be above 0"),
        ("[control]\nshare = 1\n", "[control] share must be below 1"),
        ("[exclude]\nno_consent = false\n", "no_consent cannot be turned off for email"),
        ("[exclude]\nsuppressed = false\n", "[exclude] suppressed cannot be turned off"),
        ("[audience]\nsegment = 'rfm'\n", "must be RUN_NAME:SEGMENT"),
        ("[audience]\ntop = {score = 'uplift', n = 5}\nshare = 0.5\n", "either top"),
        ("[audience]\ntop = {score = 'luck', n = 5}\n", "[audience] top score"),
        ("[audience]\ntags = ['Bad Tag']\n", "[audience] tags"),
        ("[offer]\nmargin = 2\n", "[offer] margin must be at most 1"),
        ("[exclude]\nfrequency_cap = {messages = 0, days = 7}\n", "frequency_cap messages"),
        ("colour = 'red'\n", "colour is not a known setting"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, extra: str, message: str) -> None:
    # Keys of the top level must come before the first table.
    text = extra + GOOD if extra.startswith("colour") else GOOD + extra
    with pytest.raises(InputError) as exc:
        load_spec(write(tmp_path, text))
    assert message in str(exc.value)
    assert str(tmp_path / "spec.toml") in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "spring"\nchannel = "sms"\n', "channel"),
        ('name = "Spring Sale!"\nchannel = "email"\n', "name"),
        ('name = "spring"\nchannel = "email"\n', "at least one [[variants]]"),
        ('name = "spring"\nchannel = "ads"\n[[variants]]\nname = "a"\n', "remove [[variants]]"),
        (GOOD.replace('subject = "Hi"\n', ""), "needs a subject"),
        (GOOD + '[[variants]]\nname = "a"\nsubject = "x"\nbody = "y"\n', "used twice"),
        ('name = "spring"\nchannel = ', "fix the TOML syntax"),
    ],
)
def test_bad_specs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=None) as exc:
        load_spec(write(tmp_path, text))
    assert message in str(exc.value)


def test_template_problems_name_the_variant_and_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"variants #1 \(a\) template .*a\.txt does not exist"):
        load_spec(write(tmp_path, GOOD, template=None))
    with pytest.raises(InputError, match="is empty"):
        load_spec(write(tmp_path, GOOD, template="  \n"))
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe bad")
    path = tmp_path / "spec.toml"
    with pytest.raises(InputError, match="not UTF-8"):
        load_spec(path)


def test_a_missing_spec_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"campaign spec .*nope\.toml does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_json_specs_carry_the_body_and_never_a_path() -> None:
    raw = {
        "name": "api-made",
        "channel": "webhook",
        "variants": [{"name": "a", "body": '{"text": "hi {{ first_name }}"}'}],
    }
    spec = spec_from_json(raw)
    assert isinstance(spec, CampaignSpec) and spec.variants[0].body
    raw["variants"] = [{"name": "a", "template": "/etc/passwd"}]
    with pytest.raises(InputError, match="names a file; send the template's text in body"):
        spec_from_json(raw)
    with pytest.raises(InputError, match=r"campaign: \[control\] share"):
        spec_from_json({**raw, "control": {"share": 1.5}})


def test_weights_default_to_equal_shares(tmp_path: Path) -> None:
    extra = '[[variants]]\nname = "b"\nsubject = "x"\nbody = "y"\nweight = 3\n'
    spec = load_spec(write(tmp_path, GOOD + extra))
    assert spec.weights() == [0.25, 0.75]
    assert json.loads(spec.to_json())["variants"][1]["weight"] == 3


def test_html_is_told_by_extension_or_format(
    tmp_path: Path, spec_file: Callable[..., Path]
) -> None:
    spec = load_spec(spec_file())
    assert [v.html for v in spec.variants] == [True, False]


@pytest.mark.parametrize("name", ["new", "audience"])
def test_the_dashboard_s_page_names_are_not_campaign_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=f"'{name}' names a page of the dashboard"):
        load_spec(write(tmp_path, GOOD.replace('name = "spring"', f'name = "{name}"')))
