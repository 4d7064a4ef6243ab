"""Generated text for the options and settings that take free text.

Each example runs the real command in a fresh copy of the store (see :mod:`.hostile`) and must
be handled like every hostile case: exit 0 or one ``error:`` line with exit 2, no traceback,
no raw control character on the terminal, nothing changed on an error. Where the meaning is
known, the result is checked too: ``quarantine discard --reason TEXT`` discards exactly the
open rows whose reason contains TEXT as written.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.cli.subprocess_cli import sql
from tests.security.hostile import CHEAP, STORE, Sandbox, toml_document

#: Characters a terminal acts on, and the lone surrogates that stand for bytes of argv that
#: are not UTF-8; mixed into Hypothesis' own characters.
CONTROL = [chr(c) for c in (*range(0x20), 0x7F, 0x9B)] + [chr(c) for c in range(0x202A, 0x202F)]
UNDECODABLE = [chr(c) for c in range(0xDC80, 0xDD00)]
MARKUP = ["[", "]", "[/]", "[bold]", "%", "_", "'", '"', "\\", ";", "--", "{0}"]
TEXT = st.text(
    st.one_of(st.characters(), st.sampled_from(CONTROL), st.sampled_from(UNDECODABLE)),
    max_size=40,
) | st.lists(st.sampled_from(MARKUP + CONTROL), max_size=8).map("".join)

RUNS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW_RUNS = settings(RUNS, max_examples=25)

NewCase = Callable[[], AbstractContextManager[Sandbox]]


def _handled(box: Sandbox, argv: list[str]) -> tuple[int | None, str]:
    res = box.run(argv)
    problems = box.problems(res)
    assert not problems, "; ".join(problems) + "\n  " + res.describe()
    return res.code, res.stdout


@pytest.fixture(scope="module")
def open_reasons(template) -> list[str]:
    rows = sql(template.folder / STORE, "SELECT reason FROM quarantine WHERE resolved_at IS NULL")
    return [r for (r,) in rows]


@RUNS
@given(user_id=TEXT)
@example(user_id="hx[/]")
@example(user_id="u\udcff\udcfe")
def test_profile_show_any_id(new_case: NewCase, user_id: str) -> None:
    with new_case() as box:
        _handled(box, ["--db", STORE, "profile", "show", "--", user_id])


@RUNS
@given(user_id=TEXT)
def test_recommend_show_any_id(new_case: NewCase, user_id: str) -> None:
    with new_case() as box:
        _handled(box, ["--db", STORE, "recommend", "show", "--", user_id])


@RUNS
@given(reason=TEXT)
@example(reason="%")
@example(reason="_")
@example(reason="below")
def test_discard_reason_matches_as_written(
    new_case: NewCase, open_reasons: list[str], reason: str
) -> None:
    """Exactly the open rows whose reason contains the text (any case) are discarded."""
    import json

    with new_case() as box:
        code, stdout = _handled(
            box, ["--db", STORE, "quarantine", "discard", f"--reason={reason}", "--json"]
        )
        left = sql(box.db, "SELECT count(*) FROM quarantine WHERE resolved_at IS NULL")[0][0]
    if code != 0:
        assert left == len(open_reasons)
        return
    matching = sum(reason.lower() in r.lower() for r in open_reasons)
    assert json.loads(stdout)["discarded"] == matching
    assert left == len(open_reasons) - matching


@SLOW_RUNS
@given(sep=TEXT)
@example(sep="'")
@example(sep="\t'); SELECT 1; --")
def test_any_sep(new_case: NewCase, sep: str) -> None:
    with new_case() as box:
        _handled(
            box,
            [
                "--db",
                STORE,
                "recommend",
                "evaluate",
                "--interactions",
                "log.csv",
                "--models",
                "pop",
                "--budget",
                "1",
                f"--sep={sep}",
            ],
        )


@RUNS
@given(name=TEXT)
def test_any_segment_run_name(new_case: NewCase, name: str) -> None:
    with new_case() as box:
        _handled(box, ["--db", STORE, "segment", "run", "--method", "rfm", f"--name={name}"])


@RUNS
@given(assignment=TEXT)
def test_any_set_value(new_case: NewCase, assignment: str) -> None:
    with new_case() as box:
        _handled(
            box,
            ["--db", STORE, "ingest", "events", f"--set=channel={assignment}", "--", "events.csv"],
        )


#: Pieces of the rule language, so generated rules get past the tokenizer.
RULE_TOKENS = [
    "frequency", "monetary", "recency_days", "aov", "top_categories", "user_id", "email",
    "p90(monetary)", "mean(aov)", "days_since(as_of)", "read_csv('/etc/passwd')",
    "and", "or", "not", "in", "between", "is", "null", "contains", "(", ")", ",",
    "=", "!=", ">=", "<", "+", "-", "*", "/", "%", "1", "0", "1e308", "-1", "'beauty'",
    "'x'' OR 1=1 --'", "\"a\"", "true",
]  # fmt: skip
RULE = st.lists(st.sampled_from(RULE_TOKENS), min_size=1, max_size=12).map(" ".join) | TEXT


@SLOW_RUNS
@given(rule=RULE)
@example(rule="frequency >= 1 or " * 300 + "frequency >= 1")
def test_any_tag_rule(new_case: NewCase, rule: str) -> None:
    with new_case() as box:
        box.write(
            "hostile.toml",
            toml_document({**CHEAP, "tags": {"rules": [{"name": "generated", "when": rule}]}}),
        )
        _handled(box, ["--db", STORE, "--config", "hostile.toml", "profile", "build"])


@SLOW_RUNS
@given(where=RULE)
def test_any_trait_filter(new_case: NewCase, where: str) -> None:
    trait = {"name": "generated", "agg": "count", "where": where}
    with new_case() as box:
        box.write("hostile.toml", toml_document({**CHEAP, "profile": {"traits": [trait]}}))
        _handled(box, ["--db", STORE, "--config", "hostile.toml", "profile", "build"])
