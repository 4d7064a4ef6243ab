"""The expression language: tokenizer and parser (tree shape, precedence, positions in errors),
check_names, and compile_ibis executed on DuckDB and compared row by row with Python."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jingzhun.errors import InputError
from jingzhun.profile import expr as ex
from jingzhun.profile.expr import ExprError, Node, check_names, compile_ibis, parse

# -- helpers -----------------------------------------------------------------------------------


def shape(node: Node) -> Any:
    """The tree without positions: ``(kind, value, negated, children...)``; names and literals
    as plain strings and values."""
    if node.kind == "name":
        return node.value
    if node.kind == "literal":
        return ("lit", node.value)
    tag: tuple[Any, ...] = (node.kind, node.value) if node.value is not None else (node.kind,)
    if node.negated:
        tag = (*tag, "negated")
    return (*tag, *(shape(a) for a in node.args))


def error_of(source: Any, where: str = "expression") -> str:
    with pytest.raises(ExprError) as info:
        parse(source, where=where)
    return str(info.value)


def column_of(message: str) -> int:
    m = re.search(r"at column (\d+) of ", message)
    assert m, message
    return int(m.group(1))


@pytest.fixture(scope="module")
def con() -> Any:
    backend = ibis.duckdb.connect()
    yield backend
    backend.disconnect()


# -- parsing: tree shape and precedence --------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # not > and > or
        ("a or b and c", ("binary", "or", "a", ("binary", "and", "b", "c"))),
        ("a and b or c", ("binary", "or", ("binary", "and", "a", "b"), "c")),
        ("not a and b", ("binary", "and", ("unary", "not", "a"), "b")),
        ("not a or not b", ("binary", "or", ("unary", "not", "a"), ("unary", "not", "b"))),
        ("not not a", ("unary", "not", ("unary", "not", "a"))),
        # not applies to the whole comparison
        ("not a = 1", ("unary", "not", ("binary", "==", "a", ("lit", 1)))),
        ("(a or b) and c", ("binary", "and", ("binary", "or", "a", "b"), "c")),
        # * / % over + -, left-associative
        (
            "1 + 2 * 3",
            ("binary", "+", ("lit", 1), ("binary", "*", ("lit", 2), ("lit", 3))),
        ),
        (
            "a - b - c",
            ("binary", "-", ("binary", "-", "a", "b"), "c"),
        ),
        (
            "a / b % c * d",
            ("binary", "*", ("binary", "%", ("binary", "/", "a", "b"), "c"), "d"),
        ),
        ("(1 + 2) * 3", ("binary", "*", ("binary", "+", ("lit", 1), ("lit", 2)), ("lit", 3))),
        # unary minus binds tighter than *
        ("-a * b", ("binary", "*", ("unary", "-", "a"), "b")),
        ("a - -b", ("binary", "-", "a", ("unary", "-", "b"))),
        # comparisons sit between arithmetic and the boolean operators
        (
            "a + b > c * 2 and d <= 1",
            (
                "binary",
                "and",
                ("binary", ">", ("binary", "+", "a", "b"), ("binary", "*", "c", ("lit", 2))),
                ("binary", "<=", "d", ("lit", 1)),
            ),
        ),
        # every comparison spelling
        ("a = 1", ("binary", "==", "a", ("lit", 1))),
        ("a == 1", ("binary", "==", "a", ("lit", 1))),
        ("a != 1", ("binary", "!=", "a", ("lit", 1))),
        ("a <> 1", ("binary", "!=", "a", ("lit", 1))),
        ("a < 1", ("binary", "<", "a", ("lit", 1))),
        ("a >= 1.5", ("binary", ">=", "a", ("lit", 1.5))),
        # numbers
        ("a > .5", ("binary", ">", "a", ("lit", 0.5))),
        ("a > 1e3", ("binary", ">", "a", ("lit", 1000.0))),
        ("a > 2.", ("binary", ">", "a", ("lit", 2.0))),
        ("a > 25E-1", ("binary", ">", "a", ("lit", 2.5))),
        # literals
        (
            "a = true or b = FALSE",
            (
                "binary",
                "or",
                ("binary", "==", "a", ("lit", True)),
                ("binary", "==", "b", ("lit", False)),
            ),
        ),
        ("a = null", ("binary", "==", "a", ("lit", None))),
    ],
)
def test_precedence_and_tree_shape(source: str, expected: Any) -> None:
    assert shape(parse(source)) == expected


def test_in_lists_with_negative_numbers_and_quoted_strings() -> None:
    node = parse("n in (-1, 2, -3.5, 4e1)")
    assert shape(node) == ("in", "n", ("lit", -1), ("lit", 2), ("lit", -3.5), ("lit", 40.0))
    assert not node.negated

    node = parse("s not in ('it''s', \"say \\\"hi\\\"\", 'back\\\\slash', '')")
    assert node.kind == "in" and node.negated
    assert [a.value for a in node.args[1:]] == ["it's", 'say "hi"', "back\\slash", ""]

    # true, false and null are list literals too; a space after the minus is fine
    assert [a.value for a in parse("x in (true, false, null, - 7)").args[1:]] == [
        True,
        False,
        None,
        -7,
    ]
    # a double-quoted string keeps '' as two quotes
    assert parse("s = \"it''s\"").args[1].value == "it''s"


def test_between_is_null_and_contains() -> None:
    # the 'and' of between belongs to between; the next 'and' is the boolean one
    assert shape(parse("x between 1 and 3 and y = 2")) == (
        "binary",
        "and",
        ("between", "x", ("lit", 1), ("lit", 3)),
        ("binary", "==", "y", ("lit", 2)),
    )
    assert shape(parse("x not between -1 and a + 1")) == (
        "between",
        "negated",
        "x",
        ("unary", "-", ("lit", 1)),
        ("binary", "+", "a", ("lit", 1)),
    )
    assert shape(parse("x is null")) == ("isnull", "x")
    assert shape(parse("x is not null")) == ("isnull", "negated", "x")
    assert shape(parse("not x is null")) == ("unary", "not", ("isnull", "x"))
    assert shape(parse("top_categories contains 'beauty'")) == (
        "contains",
        "top_categories",
        ("lit", "beauty"),
    )


def test_function_calls() -> None:
    assert shape(parse("p90(x)")) == shape(parse("quantile(x, 0.9)"))
    assert shape(parse("p90(x)")) == ("call", "quantile", "x", ("lit", 0.9))
    assert shape(parse("p1(x)")) == ("call", "quantile", "x", ("lit", 0.01))
    assert shape(parse("p99(x)")) == ("call", "quantile", "x", ("lit", 0.99))
    assert shape(parse("P50(x)")) == ("call", "quantile", "x", ("lit", 0.5))
    for fn in ("median", "mean", "min", "max", "abs", "lower", "days_since"):
        assert shape(parse(f"{fn}(x)")) == ("call", fn, "x")
        assert shape(parse(f"{fn.upper()}(x)")) == ("call", fn, "x")
    assert shape(parse("coalesce(a, b, 0)")) == ("call", "coalesce", "a", "b", ("lit", 0))
    assert shape(parse("coalesce(a)")) == ("call", "coalesce", "a")
    # arguments are full expressions
    assert shape(parse("abs(a - b) > 1")) == (
        "binary",
        ">",
        ("call", "abs", ("binary", "-", "a", "b")),
        ("lit", 1),
    )
    assert shape(parse("quantile(x, (0.25))")) == ("call", "quantile", "x", ("lit", 0.25))


def test_keywords_are_case_insensitive() -> None:
    assert shape(parse("A AND NOT B OR c")) == shape(parse("A and not B or c"))
    assert shape(parse("x NOT IN (1, 2)")) == shape(parse("x not in (1, 2)"))
    assert shape(parse("x Not Between 1 AND 2")) == shape(parse("x not between 1 and 2"))
    assert shape(parse("x IS NOT NULL")) == ("isnull", "negated", "x")
    assert shape(parse("l CONTAINS 'a'")) == ("contains", "l", ("lit", "a"))
    assert shape(parse("a = TRUE")) == ("binary", "==", "a", ("lit", True))
    # names keep their case
    assert parse("Monetary > 1").args[0].value == "Monetary"


def test_positions_are_offsets_of_the_tokens() -> None:
    node = parse("a >= 1 and  b in (2)")
    assert (node.kind, node.pos) == ("binary", 7)  # the 'and'
    left, right = node.args
    assert (left.pos, left.args[0].pos, left.args[1].pos) == (2, 0, 5)
    assert (right.kind, right.pos, right.args[0].pos) == ("in", 14, 12)


def test_names_lists_every_name() -> None:
    node = parse("a > p90(b) and coalesce(c, 'd') in ('x') or e is null")
    assert node.names() == {"a", "b", "c", "e"}


def test_tokenize() -> None:
    toks = ex.tokenize("a<=-1.5 AND b<>'x'")
    assert [(t.kind, t.text, t.pos) for t in toks] == [
        ("name", "a", 0),
        ("op", "<=", 1),
        ("op", "-", 3),
        ("number", "1.5", 4),
        ("keyword", "and", 8),
        ("name", "b", 12),
        ("op", "<>", 13),
        ("string", "'x'", 15),
        ("end", "", 18),
    ]
    assert [t.value for t in ex.tokenize("12 1.0 'a''b' \"c\\\"d\"")[:-1]] == [
        12,
        1.0,
        "a'b",
        'c"d',
    ]
    assert isinstance(ex.tokenize("12")[0].value, int)


# -- parse errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment", "column"),
    [
        ("", "empty expression", 1),
        ("a = $1", "unexpected character '$'", 5),
        ("a = 'open", 'unexpected character "\'"', 5),
        ("a = 1 ; b", "unexpected character ';'", 7),
        ("(a = 1", "expected ')', found the end", 7),
        ("(a = 1 b", "expected ')', found 'b'", 8),
        ("a = (1 + 2", "expected ')', found the end", 11),
        ("abs(a", "expected ')' to close the call, found the end", 6),
        ("a = 1 b", "unexpected 'b'", 7),
        ("a = 1)", "unexpected ')'", 6),
        ("a < b < c", "unexpected '<'", 7),
        ("a and", "expected a value, found the end", 6),
        ("a = ", "expected a value, found the end", 5),
        ("* a", "expected a value, found '*'", 1),
        ("a in 1", "expected '(' after in, found '1'", 6),
        ("a in (1, 2", "expected ')' to close the list, found the end", 11),
        ("a in (b)", "expected a number or a string in the list", 7),
        ("a in ()", "expected a number or a string in the list", 7),
        ("a in (1,)", "expected a number or a string in the list", 9),
        ("a in (-'x')", "a minus sign needs a number", 8),
        ("a in (1, - 'x')", "a minus sign needs a number", 12),
        ("a in (-true)", "expected a number or a string in the list", 8),
        ("a between 1 or 2", "expected 'and' in between … and …, found 'or'", 13),
        ("a is 1", "expected 'null' after is, found '1'", 6),
        ("a is not", "expected 'null' after is, found the end", 9),
        ("foo(x) > 1", "unknown function foo()", 1),
        ("a > 1 and bar()", "unknown function bar()", 11),
        ("p0(x)", "unknown function p0()", 1),
        ("p100(x)", "unknown function p100()", 1),
        ("p05(x)", "unknown function p05()", 1),
        ("p90()", "p90() takes one trait", 1),
        ("x > p90(x, 1)", "p90() takes one trait", 5),
        ("median(x, y)", "median() takes 1 argument", 1),
        ("mean()", "mean() takes 1 argument", 1),
        ("quantile(x)", "quantile() takes 2 arguments", 1),
        ("abs(a, b)", "abs() takes 1 argument", 1),
        ("lower()", "lower() takes 1 argument", 1),
        ("days_since(a, b)", "days_since() takes 1 argument", 1),
        ("coalesce()", "coalesce() needs arguments", 1),
        ("quantile(x, 1.5)", "second argument must be a number between 0 and 1", 1),
        ("quantile(x, 1)", "second argument must be a number between 0 and 1", 1),
        ("quantile(x, 0)", "second argument must be a number between 0 and 1", 1),
        ("a > quantile(x, -0.5)", "second argument must be a number between 0 and 1", 5),
        ("quantile(x, 'a')", "second argument must be a number between 0 and 1", 1),
        ("quantile(x, y)", "second argument must be a number between 0 and 1", 1),
        ("quantile(x, true)", "second argument must be a number between 0 and 1", 1),
    ],
)
def test_parse_errors_name_where_and_column(source: str, fragment: str, column: int) -> None:
    message = error_of(source, where="tag rule 'vip'")
    assert message.startswith("tag rule 'vip': "), message
    assert fragment in message, message
    assert column_of(message) == column, message
    assert message.endswith(f"at column {column} of {source!r}"), message


def test_unknown_function_lists_the_known_ones() -> None:
    message = error_of("frobnicate(x)")
    assert message.startswith("expression: unknown function frobnicate(); use one of ")
    for fn in ("abs", "coalesce", "days_since", "lower", "max", "mean", "median", "min"):
        assert fn in message
    assert "quantile" in message and "p1…p99" in message


def test_expr_error_is_an_input_error() -> None:
    assert issubclass(ExprError, InputError)
    with pytest.raises(InputError):
        parse("a >")


def test_non_string_source() -> None:
    for bad in (None, 5, ["a > 1"]):
        with pytest.raises(ExprError, match=r"^rule: expected an expression string, got "):
            parse(bad, where="rule")  # type: ignore[arg-type]


def test_deeply_nested_expression_raises_expr_error() -> None:
    with pytest.raises(ExprError):
        parse("(" * 200 + "a" + ")" * 200)


def test_error_quotes_the_source_the_column_counts_in() -> None:
    source = "monetary >  p90(monetary)   and  $"
    message = error_of(source)
    assert column_of(message) == source.index("$") + 1
    assert message.endswith(f"of {source!r}"), message


# -- check_names -------------------------------------------------------------------------------


def test_check_names_reports_unknown_name_with_column_and_suggestion() -> None:
    allowed = {"monetary": "float64", "frequency": "int64", "recency_days": "int64"}
    source = "frequency >= 2 and monetery > p90(monetary)"
    with pytest.raises(ExprError) as info:
        check_names(parse(source), source, allowed, "tag rule 'vip'")
    message = str(info.value)
    assert message.startswith("tag rule 'vip': unknown name 'monetery'; did you mean 'monetary'?")
    assert column_of(message) == source.index("monetery") + 1

    # no close match: no suggestion; names inside function calls are checked too
    source = "abs(zzz) > 1"
    with pytest.raises(ExprError) as info:
        check_names(parse(source), source, allowed, "w")
    assert "unknown name 'zzz'" in str(info.value)
    assert "did you mean" not in str(info.value)
    assert column_of(str(info.value)) == 5

    # function names and literals are not names; a clean expression passes
    check_names(parse("p90(monetary) < max(frequency) and 'abc' = 'x'"), "…", allowed, "w")


def test_check_names_reports_the_first_unknown_name() -> None:
    source = "a > 1 or b > 2"
    with pytest.raises(ExprError) as info:
        check_names(parse(source), source, {"x": None}, "w")
    assert "unknown name 'a'" in str(info.value)
    assert column_of(str(info.value)) == 1


# -- compile to Ibis and run on DuckDB ---------------------------------------------------------

NOW = datetime(2024, 3, 10, 12, 0, 0)

ROWS: list[dict[str, Any]] = [
    {
        "id": 0,
        "x": 1.0,
        "n": 3,
        "s": "ABC",
        "ts": datetime(2024, 3, 10, 11, 0),
        "lst": ["beauty", "home"],
    },
    {"id": 1, "x": 2.5, "n": -1, "s": "it's", "ts": datetime(2024, 3, 8, 12, 0), "lst": ["home"]},
    {"id": 2, "x": -0.5, "n": None, "s": None, "ts": datetime(2024, 3, 8, 12, 0, 1), "lst": []},
    {"id": 3, "x": 7.25, "n": 2, "s": "b", "ts": datetime(2024, 1, 1), "lst": ["beauty"]},
    {"id": 4, "x": None, "n": -3, "s": "abc", "ts": datetime(2024, 3, 1, 23, 59), "lst": None},
    {"id": 5, "x": 0.0, "n": 0, "s": "o'k", "ts": datetime(2023, 12, 31), "lst": ["toys"]},
    {"id": 6, "x": 4.0, "n": 10, "s": "B", "ts": datetime(2024, 3, 10, 12, 0), "lst": ["beauty"]},
]


@pytest.fixture(scope="module")
def table() -> Any:
    df = pd.DataFrame(ROWS)
    df["n"] = df["n"].astype("Int64")
    return ibis.memtable(
        df,
        schema=ibis.schema(
            {
                "id": "int64",
                "x": "float64",
                "n": "int64",
                "s": "string",
                "ts": "timestamp",
                "lst": "array<string>",
            }
        ),
    )


def plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def run(con: Any, table: Any, source: str, **kw: Any) -> list[Any]:
    out = con.execute(table.select("id", r=compile_ibis(parse(source), table, **kw)).order_by("id"))
    return [plain(v) for v in out["r"]]


def _q(values: list[float], q: float) -> float:
    return float(np.quantile([v for v in values if v is not None], q))


def _xs() -> list[float | None]:
    return [r["x"] for r in ROWS]


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool | None]:
    return lambda a, b: None if a is None or b is None else op(a, b)


_gt, _ge, _lt, _eq = (
    _cmp(lambda a, b: a > b),
    _cmp(lambda a, b: a >= b),
    _cmp(lambda a, b: a < b),
    _cmp(lambda a, b: a == b),
)


def _in(v: Any, values: list[Any]) -> bool | None:
    return None if v is None else v in values


P90 = _q(_xs(), 0.9)
MEDIAN = _q(_xs(), 0.5)
MEAN = float(np.mean([v for v in _xs() if v is not None]))

CASES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("x > 1 and n < 3", lambda r: _and(_gt(r["x"], 1), _lt(r["n"], 3))),
    ("x > 1 or n < 3", lambda r: _or(_gt(r["x"], 1), _lt(r["n"], 3))),
    ("NOT x > 1 OR n IS NULL", lambda r: _or(_not(_gt(r["x"], 1)), r["n"] is None)),
    ("not (x > 1 and n < 3)", lambda r: _not(_and(_gt(r["x"], 1), _lt(r["n"], 3)))),
    (
        "n * 2 + 1 >= x - -1",
        lambda r: _ge(
            None if r["n"] is None else r["n"] * 2 + 1, None if r["x"] is None else r["x"] + 1
        ),
    ),
    ("s in ('it''s', 'b', \"o'k\")", lambda r: _in(r["s"], ["it's", "b", "o'k"])),
    ("s not in ('it''s', 'b')", lambda r: _not(_in(r["s"], ["it's", "b"]))),
    ("n in (-1, 2, -3)", lambda r: _in(r["n"], [-1, 2, -3])),
    ("n not in (-1, 2)", lambda r: _not(_in(r["n"], [-1, 2]))),
    ("x between -0.5 and 2.5", lambda r: None if r["x"] is None else -0.5 <= r["x"] <= 2.5),
    ("x not between 0 and 4", lambda r: None if r["x"] is None else not 0 <= r["x"] <= 4),
    ("s is null", lambda r: r["s"] is None),
    ("s is not null", lambda r: r["s"] is not None),
    ("lst contains 'beauty'", lambda r: None if r["lst"] is None else "beauty" in r["lst"]),
    ("x >= p90(x)", lambda r: _ge(r["x"], P90)),
    ("x >= quantile(x, 0.9)", lambda r: _ge(r["x"], P90)),
    ("x < p25(x)", lambda r: _lt(r["x"], _q(_xs(), 0.25))),
    ("x > median(x)", lambda r: _gt(r["x"], MEDIAN)),
    ("x < mean(x)", lambda r: _lt(r["x"], MEAN)),
    ("x = min(x) or n = max(n)", lambda r: _or(_eq(r["x"], -0.5), _eq(r["n"], 10))),
    ("abs(n) = 3", lambda r: _eq(None if r["n"] is None else abs(r["n"]), 3)),
    ("lower(s) = 'abc'", lambda r: _eq(None if r["s"] is None else r["s"].lower(), "abc")),
    ("coalesce(n, 0) >= 0", lambda r: (r["n"] if r["n"] is not None else 0) >= 0),
    ("coalesce(s, 'none') = 'none'", lambda r: r["s"] is None),
    (
        "coalesce(x, n, 100) > 5",
        lambda r: next(v for v in (r["x"], r["n"], 100) if v is not None) > 5,
    ),
    (
        "days_since(ts) >= 2",
        lambda r: (NOW - r["ts"]).total_seconds() // 86_400 >= 2,
    ),
    ("days_since(ts)", lambda r: int((NOW - r["ts"]).total_seconds() // 86_400)),
    ("n % 3", lambda r: None if r["n"] is None else int(math.fmod(r["n"], 3))),  # SQL: truncated
    ("x * 2 - 1", lambda r: None if r["x"] is None else r["x"] * 2 - 1),
    ("x / 4", lambda r: None if r["x"] is None else r["x"] / 4),
    ("-x", lambda r: None if r["x"] is None else -r["x"]),
    ("true and x > 0", lambda r: _gt(r["x"], 0)),
]


@pytest.mark.parametrize(("source", "python"), CASES, ids=[c[0] for c in CASES])
def test_compiled_expression_matches_python_row_by_row(
    con: Any, table: Any, source: str, python: Callable[[dict[str, Any]], Any]
) -> None:
    now = ibis.literal(NOW, type="timestamp")
    assert run(con, table, source, now=now) == [python(r) for r in ROWS]


def test_p90_sees_the_whole_table_in_a_filter(con: Any, table: Any) -> None:
    cond = compile_ibis(parse("x >= p90(x)"), table)
    ids = sorted(con.execute(table.filter(cond))["id"])
    # p90 of [1, 2.5, -0.5, 7.25, 0, 4] (null ignored) is 5.625: only row 3 reaches it
    assert P90 == 5.625
    assert ids == [3]


def test_custom_column_resolver(con: Any, table: Any) -> None:
    node = parse("amount > 2")
    expr = compile_ibis(node, table, columns=lambda name: {"amount": table.x}[name])
    out = con.execute(table.select("id", r=expr).order_by("id"))
    assert [plain(v) for v in out["r"]] == [_gt(r["x"], 2) for r in ROWS]


def test_days_since_needs_a_reference_time(table: Any) -> None:
    with pytest.raises(InputError, match="days_since"):
        compile_ibis(parse("days_since(ts) > 1"), table)


# -- Hypothesis: parse() fails only with ExprError ---------------------------------------------

_TOKENS = [
    "a", "b", "x_1", "1", "-", "2.5", ".5", "1e3", "'x'", "'it''s'", '"q"', "(", ")", ",",
    "and", "or", "not", "in", "between", "is", "null", "true", "contains", "=", "==", "!=",
    "<>", "<", "<=", ">", ">=", "+", "*", "/", "%", "p90", "p0", "quantile", "median",
    "abs", "coalesce", "days_since", "foo", "0", "0.9", "1.5",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_random_text_raises_only_expr_error(source: str) -> None:
    try:
        node = parse(source)
    except ExprError as exc:
        assert "at column" in str(exc)
    else:
        assert isinstance(node, Node)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30), st.sampled_from([" ", ""]))
def test_random_token_soup_raises_only_expr_error(tokens: list[str], sep: str) -> None:
    source = sep.join(tokens)
    try:
        node = parse(source)
    except ExprError as exc:
        column = column_of(str(exc))
        assert 1 <= column <= len(source) + 1
    else:
        assert isinstance(node, Node)


# -- Hypothesis: random well-formed trees, compiled and run, equal a Python evaluator ---------

# A tree is a tuple: ("col", name) | ("lit", int) | ("neg", t) | ("abs", t) | (op, l, r)
# | ("cmp", op, l, r) | ("and"|"or", l, r) | ("not", t) | ("between", x, lo, hi, negated)
# | ("in", x, values, negated) | ("bool", value)

_PREC = {"+": 1, "-": 1, "*": 2, "%": 2}
_CMP = ["=", "==", "!=", "<>", "<", "<=", ">", ">="]


def _num_leaf() -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.sampled_from([("col", "a"), ("col", "b")]),
        st.integers(-5, 5).map(lambda v: ("lit", v)),
    )


def _num_extend(children: st.SearchStrategy[tuple]) -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*"]), children, children),
        st.tuples(st.just("%"), children, st.integers(1, 5).map(lambda v: ("lit", v))),
        st.tuples(st.just("neg"), children),
        st.tuples(st.just("abs"), children),
    )


NUM = st.recursive(_num_leaf(), _num_extend, max_leaves=8)


#: Comparison operands: often a bare column or literal, so both sides are often equal.
OPERAND = st.one_of(_num_leaf(), NUM)


def _bool_leaf() -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.tuples(st.just("cmp"), st.sampled_from(_CMP), OPERAND, OPERAND),
        st.tuples(st.just("between"), NUM, NUM, NUM, st.booleans()),
        st.tuples(
            st.just("in"), NUM, st.lists(st.integers(-6, 6), min_size=1, max_size=4), st.booleans()
        ),
        st.tuples(st.just("bool"), st.booleans()),
    )


def _bool_extend(children: st.SearchStrategy[tuple]) -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), children, children),
        st.tuples(st.just("not"), children),
    )


BOOL = st.recursive(_bool_leaf(), _bool_extend, max_leaves=6)


def render_num(t: tuple, parent: int = 0, right: bool = False) -> str:
    kind = t[0]
    if kind == "col":
        return t[1]
    if kind == "lit":
        return str(t[1])  # a negative literal parses as unary minus: same value
    if kind == "neg":
        return "-" + render_num(t[1], 3)
    if kind == "abs":
        return f"abs({render_num(t[1])})"
    prec = _PREC[kind]
    text = f"{render_num(t[1], prec)} {kind} {render_num(t[2], prec, right=True)}"
    # left-associative: a right operand of equal precedence needs parentheses
    if prec < parent or (right and prec == parent) or parent == 3:
        return f"({text})"
    return text


_BPREC = {"or": 1, "and": 2, "not": 3}


def render_bool(t: tuple, parent: int = 0, rng: Any = None) -> str:
    kind = t[0]
    if kind == "cmp":
        return f"{render_num(t[2])} {t[1]} {render_num(t[3])}"
    if kind == "between":
        neg = "not " if t[4] else ""
        return f"{render_num(t[1])} {neg}between {render_num(t[2])} and {render_num(t[3])}"
    if kind == "in":
        neg = "not " if t[3] else ""
        return f"{render_num(t[1])} {neg}in ({', '.join(str(v) for v in t[2])})"
    if kind == "bool":
        return "true" if t[1] else "FALSE"
    if kind == "not":
        return "not " + render_bool(t[1], 3)
    prec = _BPREC[kind]
    text = f"{render_bool(t[1], prec)} {kind} {render_bool(t[2], prec + 1)}"
    return f"({text})" if prec < parent else text


def eval_num(t: tuple, row: dict[str, int]) -> int:
    kind = t[0]
    if kind == "col":
        return row[t[1]]
    if kind == "lit":
        return t[1]
    if kind == "neg":
        return -eval_num(t[1], row)
    if kind == "abs":
        return abs(eval_num(t[1], row))
    a, b = eval_num(t[1], row), eval_num(t[2], row)
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    # SQL's % truncates toward zero (the sign follows the dividend)
    r = abs(a) % abs(b)
    return r if a >= 0 else -r


_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def eval_bool(t: tuple, row: dict[str, int]) -> bool:
    kind = t[0]
    if kind == "cmp":
        return _OPS[t[1]](eval_num(t[2], row), eval_num(t[3], row))
    if kind == "between":
        inside = eval_num(t[2], row) <= eval_num(t[1], row) <= eval_num(t[3], row)
        return inside != t[4]
    if kind == "in":
        return (eval_num(t[1], row) in t[2]) != t[3]
    if kind == "bool":
        return t[1]
    if kind == "not":
        return not eval_bool(t[1], row)
    if kind == "and":
        return eval_bool(t[1], row) and eval_bool(t[2], row)
    return eval_bool(t[1], row) or eval_bool(t[2], row)


def test_renderer_and_evaluator_agree_on_known_cases() -> None:
    # the generator's own helpers, checked by hand so the property test can fail meaningfully
    t = ("-", ("col", "a"), ("-", ("col", "b"), ("lit", 1)))
    assert render_num(t) == "a - (b - 1)"
    assert eval_num(t, {"a": 5, "b": 3}) == 3
    assert eval_num(("%", ("lit", -7), ("lit", 3)), {}) == -1
    assert render_num(("neg", ("+", ("col", "a"), ("lit", 1)))) == "-(a + 1)"
    b = ("and", ("or", ("bool", True), ("bool", False)), ("not", ("bool", False)))
    assert render_bool(b) == "(true or FALSE) and not FALSE"


ROWS_AB = st.lists(
    st.fixed_dictionaries({"a": st.integers(-4, 4), "b": st.integers(-4, 4)}),
    min_size=3,
    max_size=8,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.one_of(BOOL, NUM), rows=ROWS_AB)
def test_random_trees_compile_to_what_python_computes(
    con: Any, tree: tuple, rows: list[dict[str, int]]
) -> None:
    is_bool = tree[0] in ("cmp", "between", "in", "bool", "not", "and", "or")
    source = render_bool(tree) if is_bool else render_num(tree)
    data = pd.DataFrame([{"i": i, **r} for i, r in enumerate(rows)])
    t = ibis.memtable(data, schema=ibis.schema({"i": "int64", "a": "int64", "b": "int64"}))
    expr = compile_ibis(parse(source), t)
    out = con.execute(t.select("i", r=expr).order_by("i"))
    got = [plain(v) for v in out["r"]]
    want = [eval_bool(tree, r) if is_bool else eval_num(tree, r) for r in rows]
    assert got == want, source


# -- size limits: long operator chains, huge literals (issue 12) -------------------------------


def test_a_thousand_chained_or_and_and_terms_compile_and_run(con: Any) -> None:
    """and/or chains are built balanced, so a long list of terms does not recurse per term."""
    terms = [f"a = {i}" for i in range(1000)]
    data = pd.DataFrame({"a": [0, 500, 999, 1000, -1]})
    t = ibis.memtable(data, schema=ibis.schema({"a": "int64"}))
    for op, want in (("or", [True, True, True, False, False]), ("and", [False] * 5)):
        source = f" {op} ".join(terms)
        node = parse(source, where="tag rule 'x'")
        check_names(node, source, {"a": "int64"}, "tag rule 'x'")
        expr = ex.compile_condition(node, t, source=source, where="tag rule 'x'")
        assert [bool(v) for v in con.execute(t.select(r=expr))["r"]] == want


def test_chains_keep_their_meaning_and_positions() -> None:
    assert shape(parse("a or b or c")) in (
        ("binary", "or", ("binary", "or", "a", "b"), "c"),
        ("binary", "or", "a", ("binary", "or", "b", "c")),
    )
    node = parse("a and b and c and d")
    assert node.names() == {"a", "b", "c", "d"}
    # every operator node points at its own `and`
    positions, stack = [], [node]
    while stack:
        n = stack.pop()
        if n.kind == "binary":
            positions.append(n.pos)
        stack.extend(n.args)
    assert sorted(positions) == [2, 8, 14]


def test_a_long_arithmetic_chain_is_refused_naming_the_rule() -> None:
    source = " + ".join(["frequency"] * 400) + " > 0"
    message = error_of(source, where="tag rule 'x'")
    assert message.startswith("tag rule 'x': the expression is more than 100 levels deep")
    assert "\n" not in message
    # a chain within the limit still parses
    parse(" + ".join(["frequency"] * 90) + " > 0")


def test_too_many_terms_are_refused() -> None:
    source = "a in (" + ", ".join(["1"] * (ex.MAX_NODES + 10)) + ")"
    assert "more than 20,000 terms" in error_of(source)


@pytest.mark.parametrize(
    ("literal", "fragment"),
    [
        ("1e999", "is too large"),
        ("9" * 5000, "is larger than 9,223,372,036,854,775,807"),
        (str(2**63), "is larger than"),
    ],
)
def test_number_literals_out_of_range_are_refused(literal: str, fragment: str) -> None:
    message = error_of(f"a > {literal}", where="rule")
    assert fragment in message
    assert column_of(message) == 5
    parse(f"a > {2**63 - 1}")  # the largest BIGINT is fine


_NOISE = ["and", "or", "+", "-", "*", "/", "=", "<", "not", "(", ")"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bools=st.lists(st.sampled_from(["and", "or"]), min_size=1, max_size=4),
    terms=st.integers(0, 3000),
    ariths=st.lists(st.sampled_from(["+", "-", "*", "/", "%"]), min_size=1, max_size=4),
    chain=st.integers(0, 300),
    nots=st.integers(0, 120),
    parens=st.integers(0, 120),
    noise=st.lists(st.sampled_from(_NOISE), max_size=4),
)
@example(bools=["or"], terms=3000, ariths=["+"], chain=0, nots=0, parens=0, noise=[])
@example(bools=["and"], terms=1200, ariths=["+"], chain=0, nots=3, parens=2, noise=[])
@example(bools=["or"], terms=2, ariths=["-"], chain=300, nots=0, parens=0, noise=[])
def test_random_long_chains_and_nesting_raise_only_input_error(
    con: Any,
    bools: list[str],
    terms: int,
    ariths: list[str],
    chain: int,
    nots: int,
    parens: int,
    noise: list[str],
) -> None:
    """Whatever the length of a chain or the depth of nesting: a tree, or one InputError line."""
    first = "a" + "".join(f" {ariths[i % len(ariths)]} a" for i in range(chain)) + " > 1"
    body = first + "".join(f" {bools[i % len(bools)]} a > {i}" for i in range(terms))
    source = "not " * nots + "(" * parens + body + ")" * parens + " " + " ".join(noise)
    t = ibis.memtable(pd.DataFrame({"a": [1, 2]}), schema=ibis.schema({"a": "int64"}))
    try:
        node = parse(source, where="rule")
        check_names(node, source, {"a": "int64"}, "rule")
        ex.compile_condition(node, t, source=source, where="rule")
    except InputError as exc:
        assert "\n" not in str(exc)
