"""Every settings key of ``jingzhun.toml``, given hostile values.

The keys come from :class:`jingzhun.config.Settings` itself (its sections and their fields,
into lists of tables and maps), so a new key is covered without a change here. Each case
writes a settings file with one hostile value (on top of the quick settings every case
uses) and runs, with ``--config``, the command that reads that section: the value must be
refused in one line naming it, or handled. A section or a key that needs a valid example
(a map's key, a list's entry) and has none in :data:`EXAMPLES` fails
:func:`test_every_key_is_covered`.

The regression cases of issue 12 follow: 100,000,000 threads, a 5,000-deep file, a tag rule
of 1,000 chained ``or``.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from jingzhun.config import Settings
from tests.security.hostile import (
    CHEAP,
    TEXT,
    Outcome,
    Sandbox,
    Template,
    run_child,
    short,
    toml_document,
)

# -- hostile values by type --------------------------------------------------------------------

S_TEXT: dict[str, Any] = dict(TEXT)
S_INT: dict[str, Any] = {"negative": -1, "zero": 0, "huge": 100_000_000, "int64": 2**63 - 1}
S_FLOAT: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "negative": -1.0,
    "zero": 0.0,
    "huge": 1e308,
    "tiny": 1e-300,
}
S_BOOL: dict[str, Any] = {"text": "yes", "int": 2}
#: Hostile map keys (a key is text the file names: an event, an item id, a model).
S_KEYS = {k: TEXT[k] for k in ("sql", "control", "long", "utf8", "empty")}
#: Parameter maps (``[predict.params.logistic]``) are read by commands that train for
#: seconds before they use them: fewer keys and values there.
NESTED_KEYS = ("sql",)
NESTED_VALUES = ("nan", "negative", "huge", "text-sql")
MANY = 10_000
#: Entries of lists of tables (custom traits, tag rules, bins): 2,000 ran out of memory.
MANY_TABLES = 2_000

#: A valid example for each map (key, value) and list entry, so one part can be made hostile.
EXAMPLES: dict[str, Any] = {
    "ingest.event_map": ("purchase", "order_completed"),
    "profile.weights": ("product_viewed", 1.0),
    "profile.score": ("frequency", 0.3),
    "profile.traits": {"name": "t1", "agg": "count"},
    "tags.rules": {"name": "r1", "when": "frequency >= 1"},
    "tags.bins": {"name": "b1", "trait": "monetary"},
    "tags.bins.quantiles": 0.5,
    "tags.bins.labels": "low",
    "recommend.weights": ("order_completed", 5.0),
    "recommend.params": ("als", {"factors": 8}),
    "recommend.params.als": ("factors", 8),
    "recommend.boost": ("{item}", 2.0),
    "recommend.rebuy_categories": "beauty",
    "recommend.include_categories": "beauty",
    "recommend.exclude_categories": "beauty",
    "predict.models": "logistic",
    "predict.params": ("logistic", {"C": 1.0}),
    "predict.params.logistic": ("C", 1.0),
}

#: The command that reads each section (``--config`` is added); some keys are read elsewhere.
CONSUMERS: dict[str, tuple[str, ...]] = {
    "store": ("status",),
    "ingest": ("ingest", "events", "--", "events.csv"),
    "clean": ("clean",),
    "profile": ("profile", "build"),
    "tags": ("profile", "build"),
    "recommend": ("recommend", "train"),
    "predict": ("predict", "train"),
    # The server's settings are only read by `jingzhun serve`, which would run until stopped;
    # every command loads and checks the whole file, so a bad value fails `status` as it would
    # fail serve (serve's own --host/--port are in test_cli_options).
    "server": ("status",),
    # The campaign stage's sections are read by campaign send/export/trigger, which need an
    # SMTP server, a gateway or an ads campaign (tests/campaign sends to real ones); as for
    # the server's, every command checks them, so a bad value fails `status` too.
    "email": ("status",),
    "tracking": ("status",),
    "webhook": ("status",),
    "privacy": ("status",),
    # Read by --engine spark commands, which start Spark; check_master's refusals are tested
    # in tests/spark. Every command checks the file, so a bad value fails `status` too.
    "spark": ("status",),
}
KEY_CONSUMERS: dict[str, tuple[str, ...]] = {
    **{
        f"recommend.{k}": ("recommend", "batch")
        for k in (
            "k",
            "exclude_purchased",
            "rebuy_categories",
            "only_available",
            "include_categories",
            "exclude_categories",
            "price_min",
            "price_max",
            "max_per_category",
            "boost",
            "segment_run",
        )
    },
    "recommend.params": ("recommend", "train", "--model", "als"),
    **{f"predict.{k}": ("predict", "clv") for k in ("margin", "discount_rate", "clv_months")},
    **{f"predict.{k}": ("predict", "score") for k in ("reasons_share", "tag_high", "tag_medium")},
    "predict.message_cost": (
        "predict",
        "uplift",
        "--assignments",
        "assign.csv",
        "--models",
        "class_transformation",
    ),
}
#: Keys whose hostile values could take the test process down if a bound were lost (10⁸
#: threads): run in a child process with a time limit instead.
ISOLATED = {"store.threads"}


# -- the keys ----------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation  # a real union (float | int | str)
            annotation = args[0]
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _scalars(annotation: Any) -> dict[str, Any]:
    """Hostile values for a scalar type, or a union of scalar types."""
    annotation = _unwrap(annotation)
    if _is_union(annotation):  # a parameter map's value (float | int | str …): numbers, text
        args = typing.get_args(annotation)
        found: dict[str, Any] = dict(S_FLOAT) if float in args else {}
        if str in args:
            found |= {f"text-{k}": v for k, v in S_KEYS.items()}
        return found
    if annotation is bool:
        return S_BOOL
    if annotation is int:
        return S_INT
    if annotation is float:
        return S_FLOAT
    if annotation is str or typing.get_origin(annotation) is typing.Literal:
        return S_TEXT
    raise AssertionError(f"no hostile values for {annotation!r}")


def _example(path: str) -> Any:
    assert path in EXAMPLES, f"{path}: give EXAMPLES a valid entry, so one part can be hostile"
    return EXAMPLES[path]


def values_for(path: str, annotation: Any, *, nested: bool = False) -> Iterator[tuple[str, Any]]:
    """(label, value) for every hostile value of the key at ``path``; ``nested``: inside or
    holding a parameter map (fewer keys and values, see NESTED_KEYS)."""
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        example = _example(path)
        for name, info in annotation.model_fields.items():
            for label, value in values_for(f"{path}.{name}", info.annotation):
                yield f"{name}-{label}", {**example, name: value}
        return
    if origin is dict:
        _, value_type = typing.get_args(annotation)
        key, value = _example(path)
        inner = _unwrap(value_type)
        nested = nested or typing.get_origin(inner) is dict
        keys = {k: S_KEYS[k] for k in NESTED_KEYS} if nested else S_KEYS
        for label, bad in keys.items():
            yield f"key-{label}", {bad: value}
        if typing.get_origin(inner) is dict:
            for label, bad in values_for(f"{path}.{key}", inner, nested=True):
                yield f"{key}-{label}", {key: bad}
        else:
            values = _scalars(value_type)
            if nested:
                values = {k: v for k, v in values.items() if k in NESTED_VALUES}
            for label, bad in values.items():
                yield f"value-{label}", {key: bad}
        yield "many", {f"{key}{i}" if i else key: value for i in range(MANY)}
        return
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        item = _unwrap(item_type)
        if isinstance(item, type) and issubclass(item, BaseModel):
            for label, bad in values_for(path, item):
                yield label, [bad]
            example = _example(path)
            yield (
                "many",
                [{**example, "name": f"{example['name']}_{i}"} for i in range(MANY_TABLES)],
            )
        else:
            for label, bad in _scalars(item).items():
                yield f"entry-{label}", [bad]
            yield "many", [_example(path)] * MANY
        yield "empty-list", []
        return
    yield from _scalars(annotation).items()


@dataclass(frozen=True)
class SettingCase:
    id: str
    section: str
    key: str
    value: Any

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"


def setting_cases() -> list[SettingCase]:
    cases = []
    for section, info in Settings.model_fields.items():
        model = _unwrap(info.annotation)
        for key, field_info in model.model_fields.items():
            for label, value in values_for(f"{section}.{key}", field_info.annotation):
                cases.append(SettingCase(f"{section}.{key}:{label}", section, key, value))
    return cases


CASES = setting_cases()


def _document(case: SettingCase, template: Template) -> bytes:
    sections = {s: dict(v) for s, v in CHEAP.items()}
    value = _fill(case.value, template.items[0])
    sections.setdefault(case.section, {})[case.key] = value
    return toml_document(sections)


def _fill(value: Any, item: str) -> Any:
    if isinstance(value, dict):
        return {(item if k == "{item}" else k): _fill(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, item) for v in value]
    return value


def consumer(case: SettingCase) -> tuple[str, ...]:
    return KEY_CONSUMERS.get(case.path, CONSUMERS[case.section])


def run_setting(
    box: Sandbox, template: Template, document: bytes, command: tuple[str, ...]
) -> Outcome:
    box.write("hostile.toml", document)
    argv = ["--db", "store.duckdb", "--config", "hostile.toml", *command]
    return box.run(argv)


def assert_handled(box: Sandbox, res: Outcome) -> None:
    problems = box.problems(res)
    assert not problems, "; ".join(problems) + "\n  " + res.describe()


# -- the table covers the settings -------------------------------------------------------------


def test_every_key_is_covered() -> None:
    """Every section has a consumer, every key has cases, every consumer names a key."""
    keys = {
        f"{s}.{k}"
        for s, i in Settings.model_fields.items()
        for k in _unwrap(i.annotation).model_fields
    }
    assert set(CONSUMERS) == set(Settings.model_fields), "give each section a consumer"
    assert {c.path for c in CASES} == keys
    assert set(KEY_CONSUMERS) <= keys, f"no such keys: {set(KEY_CONSUMERS) - keys}"
    assert keys >= ISOLATED
    for case in CASES[:50]:  # the writer round-trips through tomllib
        document = toml_document({case.section: {case.key: case.value}})
        try:
            text = document.decode("utf-8")
        except UnicodeDecodeError:
            continue  # the invalid-UTF-8 cases
        assert tomllib.loads(text)[case.section][case.key] is not None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_setting(case: SettingCase, box: Sandbox, template: Template) -> None:
    document = _document(case, template)
    command = consumer(case)
    if case.path in ISOLATED:
        box.write("hostile.toml", document)
        res = run_child(["--db", "store.duckdb", "--config", "hostile.toml", *command], box.work)
    else:
        res = run_setting(box, template, document, command)
    assert_handled(box, res)


def test_consumers_succeed_on_the_quick_settings(box: Sandbox, template: Template) -> None:
    """The commands the cases run work with valid settings: a case reaches its key."""
    for command in {*CONSUMERS.values(), *KEY_CONSUMERS.values()}:
        res = run_setting(box, template, toml_document(CHEAP), command)
        assert res.code == 0, res.describe()


# -- issue 12 ----------------------------------------------------------------------------------


def test_a_hundred_million_threads_are_refused_in_a_child_process(
    box: Sandbox, template: Template
) -> None:
    """``[store] threads = 100000000`` hung; now one line naming the key (a child process:
    a lost bound would take the test process down)."""
    box.write("hostile.toml", toml_document({"store": {"threads": 100_000_000}}))
    res = run_child(["--db", "store.duckdb", "--config", "hostile.toml", "status"], box.work)
    assert_handled(box, res)
    assert res.code == 2 and "threads" in res.stderr, res.describe()


def _deep(kind: str, depth: int = 5000) -> str:
    if kind == "arrays":
        return "x = " + "[" * depth + "]" * depth + "\n"
    if kind == "inline-tables":
        return "x = " + "{a = " * depth + "1" + "}" * depth + "\n"
    if kind == "table-header":
        return "[" + ".".join(["a"] * depth) + "]\nb = 1\n"
    return "[profile]\nweights = " + "{a = " * depth + "1" + "}" * depth + "\n"


@pytest.mark.parametrize("kind", ["arrays", "inline-tables", "table-header", "under-a-key"])
def test_a_5000_deep_settings_file_is_one_line(kind: str, box: Sandbox, template: Template) -> None:
    box.write("hostile.toml", _deep(kind))
    res = box.run(["--db", "store.duckdb", "--config", "hostile.toml", "status"])
    assert_handled(box, res)
    assert res.code == 2, res.describe()
    assert "hostile.toml" in res.stderr, res.describe()


@pytest.mark.parametrize("op", ["or", "and"])
def test_a_tag_rule_of_1000_chained_operators(op: str, box: Sandbox, template: Template) -> None:
    """A RecursionError before: the depth limit did not count operator chains. Now either
    built or refused in one line naming the rule."""
    rule = f" {op} ".join(["frequency >= 1"] * 1000)
    document = toml_document({**CHEAP, "tags": {"rules": [{"name": "chained", "when": rule}]}})
    res = run_setting(box, template, document, ("profile", "build"))
    assert_handled(box, res)
    if res.code == 2:
        assert "chained" in res.stderr, res.describe()


def test_settings_cases_count() -> None:
    assert len(CASES) > 200, short(len(CASES))
