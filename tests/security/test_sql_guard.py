"""No user text is ever formatted into SQL.

A walk over the package's source (its AST) finds every string built by an f-string, ``%`` or
``str.format`` that reaches a call which runs SQL (``execute``, ``sql``, ``query``, ``rows``,
``scalar``, ``run``, ``executemany``), directly or through a local variable. Each value spliced
into such a string must be one of:

- a constant, or a module constant (an ``UPPER_CASE`` name: table names from ``store.tables``);
- the result of the one identifier/literal quoting helpers (``ident``, ``lit``, ``q``) or of
  ``int()``, ``len()`` (a number cannot close a string);
- a local variable or parameter whose every value is itself a safe SQL fragment by these rules
  (a parameter is trusted only when it is annotated ``Sql``, the marker for generated SQL,
  so a caller cannot pass user text in by accident of typing);
- a comprehension or ``join`` over such values;
- the result of a function of the package whose return annotation is ``Sql`` (or a tuple
  whose first element is ``Sql``: ``sql, params = members_query(…)``) — a stage's read
  functions hand other stages their queries this way. Like a parameter annotated ``Sql``,
  the annotation is the promise: give such a function's result nothing a user typed.

Anything else is a finding that names the file and line. The walk is checked against the code
the issue found (``delim='{sep}'``), so it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import jingzhun

PACKAGE = Path(jingzhun.__file__).parent
SINKS = {"execute", "executemany", "sql", "query", "rows", "scalar", "run"}
#: Quoting helpers, numbers, and Ibis' compiler (it quotes every name and literal it emits).
SAFE_CALLS = {"ident", "lit", "q", "int", "len", "is_in", "to_sql"}
SQL_TYPE = "Sql"


def _is_constant_name(node: ast.expr) -> bool:
    if isinstance(node, ast.Subscript):  # CONSTANT[key]
        return _is_constant_name(node.value)
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return bool(name) and name.lstrip("_").isupper()


def _returns_sql(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if fn.returns is None:
        return False
    text = ast.unparse(fn.returns).strip("'\"")
    return text == SQL_TYPE or text.startswith(f"tuple[{SQL_TYPE},")


def sql_functions(sources: list[str]) -> frozenset[str]:
    """Names of the functions (in ``sources``) annotated to return generated SQL."""
    return frozenset(
        n.name
        for src in sources
        for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and _returns_sql(n)
    )


class _Function:
    """Assignments and annotated parameters of one function body."""

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module) -> None:
        self.values: dict[str, list[ast.expr]] = {}
        self.trusted: set[str] = set()
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            args = fn.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                annotation = ast.unparse(a.annotation).strip("'\"") if a.annotation else ""
                if annotation in (SQL_TYPE, f"{SQL_TYPE} | None"):
                    self.trusted.add(a.arg)
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    first = (
                        target.elts[0]
                        if isinstance(target, ast.Tuple | ast.List)
                        and target.elts
                        and isinstance(node.value, ast.Call)
                        else None
                    )
                    for name in _names(target):
                        # ``sql, params = query()``: the first name holds the call's SQL part.
                        whole = isinstance(target, ast.Name)
                        is_first = isinstance(first, ast.Name) and first.id == name
                        self.values.setdefault(name, []).append(
                            node.value if whole or is_first else ast.Name("?")
                        )
            elif isinstance(node, ast.AnnAssign):
                # ``name: Sql`` (with or without a value) declares generated SQL.
                for name in _names(node.target):
                    if ast.unparse(node.annotation).strip("'\"") in (SQL_TYPE, f"list[{SQL_TYPE}]"):
                        self.trusted.add(name)
                    if node.value is not None:
                        self.values.setdefault(name, []).append(node.value)
            elif isinstance(node, ast.AugAssign):
                for name in _names(node.target):
                    self.values.setdefault(name, []).append(node.value)
            elif isinstance(node, ast.For | ast.comprehension):
                # A loop over a module constant (a tuple of known names) yields constants.
                bound = node.iter if _is_constant_name(node.iter) else ast.Name("?")
                for name in _names(node.target):
                    self.values.setdefault(name, []).append(bound)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "extend", "insert")
                and isinstance(node.func.value, ast.Name)
                and node.args
            ):  # a list of fragments grows: what goes in counts as assigned
                self.values.setdefault(node.func.value.id, []).append(node.args[-1])
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                for name in _names(node.optional_vars):
                    self.values.setdefault(name, []).append(ast.Name("?"))


def _names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _names(elt)


def _formatted(node: ast.expr) -> list[ast.expr] | None:
    """The values spliced into ``node`` if it is a formatted string, else None."""
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mod)
        and isinstance(node.left, ast.Constant)
        and isinstance(node.left.value, str)
    ):
        right = node.right
        return list(right.elts) if isinstance(right, ast.Tuple) else [right]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
    ):
        return [*node.args, *(k.value for k in node.keywords)]
    return None


class _Checker:
    def __init__(self, fn: _Function, sql_returning: frozenset[str] = frozenset()) -> None:
        self.fn = fn
        self.sql_returning = sql_returning
        self.seen: set[str] = set()

    def safe(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return True
        if _is_constant_name(node):
            return True
        if isinstance(node, ast.Name):
            return self.safe_name(node.id)
        if isinstance(node, ast.JoinedStr):
            return all(self.safe(v) for v in _formatted(node) or [])
        if isinstance(node, ast.FormattedValue):
            return self.safe(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            return self.safe(node.left) and self.safe(node.right)
        if isinstance(node, ast.IfExp):
            return self.safe(node.body) and self.safe(node.orelse)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in SAFE_CALLS or name in self.sql_returning:
                return True
            if name == "join" and isinstance(func, ast.Attribute):
                return self.safe(func.value) and all(self.safe(a) for a in node.args)
            fmt = _formatted(node)
            return fmt is not None and all(self.safe(v) for v in fmt)
        if isinstance(node, ast.GeneratorExp | ast.ListComp):
            return self.safe(node.elt)
        if isinstance(node, ast.List | ast.Tuple):
            return all(self.safe(e) for e in node.elts)
        return False

    def safe_name(self, name: str) -> bool:
        if name in self.fn.trusted:
            return True
        if name in self.seen:  # a fragment built up from itself (x += ...)
            return True
        values = self.fn.values.get(name)
        if not values:
            return False  # an untyped parameter, a global or a name from elsewhere
        self.seen.add(name)
        try:
            return all(self.safe(v) for v in values)
        finally:
            self.seen.discard(name)


def findings(source: str, filename: str, sql_returning: frozenset[str] | None = None) -> list[str]:
    tree = ast.parse(source, filename)
    if sql_returning is None:
        sql_returning = sql_functions([source])
    out: list[str] = []
    scopes: list[ast.AST] = [tree] + [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    for scope in scopes:
        fn = _Function(scope)  # type: ignore[arg-type]
        checker = _Checker(fn, sql_returning)
        for node in _walk_own(scope.body):  # type: ignore[attr-defined]
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SINKS
                and node.args
            ):
                continue
            arg = node.args[0]
            spliced = _formatted(arg)
            if spliced is None and isinstance(arg, ast.Name):
                values = fn.values.get(arg.id, [])
                if any(_formatted(v) is not None for v in values) and not checker.safe(arg):
                    spliced = [arg]
            if spliced is None:
                continue
            bad = [v for v in spliced if not checker.safe(v)]
            if bad:
                out.append(
                    f"{filename}:{node.lineno}: {node.func.attr}() gets SQL with "
                    + ", ".join(ast.unparse(b) for b in bad)
                    + " spliced in"
                )
    return out


def _walk_own(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Nodes of a scope, not descending into nested functions (they are scopes of their own)."""
    stack: list[ast.AST] = [
        n for n in body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.append(child)


# The code the hostile-input test found (ingest/logs.py before the fix), as it was.
_SEP_BUG = """
def read_file(path, flag, *, sep=None, header=True):
    q = str(path).replace("'", "''")
    opts = [f"header={'true' if header else 'false'}"]
    if sep:
        opts.append(f"delim='{sep}'")
    query = f"SELECT * FROM read_csv('{q}', {', '.join(opts)})"
    return duckdb.connect().sql(query).df()
"""


def test_the_walk_finds_the_sep_injection() -> None:
    found = findings(_SEP_BUG, "logs.py")
    assert found and "sql()" in found[0], found


@pytest.mark.parametrize(
    ("code", "flagged"),
    [
        ("def f(con, v):\n    con.execute(f'SELECT {v}')", True),
        ("def f(con, v):\n    con.execute('SELECT %s' % v)", True),
        ("def f(con, v):\n    con.execute('SELECT {}'.format(v))", True),
        ("def f(con, v):\n    s = f'x {v}'\n    con.execute(s)", True),
        ("def f(con, v):\n    con.execute(f'SELECT {ident(v)}')", False),
        ("def f(con, v):\n    con.execute(f'SELECT * FROM {EVENTS}')", False),
        ("def f(con, v):\n    con.execute('SELECT ?', [v])", False),
        ("def f(con, v: Sql):\n    con.execute(f'SELECT {v}')", False),
        ("def f(con, v):\n    w: Sql\n    for w in v:\n        con.execute(f'SELECT {w}')", False),
        ("def f(con, v):\n    for w in v:\n        con.execute(f'SELECT {w}')", True),
        ("def f(con):\n    for w in (A, B):\n        con.execute(f'SELECT {w}')", True),
        ("def f(con):\n    for w in NAMES:\n        con.execute(f'SELECT {w}')", False),
        (
            "def f(con, cols):\n    c = ', '.join(q(x) for x in cols)\n    con.execute(f'SELECT {c}')",
            False,
        ),
        ("def f(con, cols):\n    c = ', '.join(cols)\n    con.execute(f'SELECT {c}')", True),
        ("def f(con, v):\n    c = []\n    c.append(v)\n    con.execute(f'SELECT {c[0]}')", True),
        (
            "def f(con, v):\n    c = []\n    c.append(v)\n    con.execute(f'SELECT {\" \".join(c)}')",
            True,
        ),
        # A read function's query: trusted by its annotation.
        (
            "def q() -> Sql:\n    return 'SELECT 1'\n"
            "def f(con):\n    con.execute(f'SELECT * FROM ({q()})')",
            False,
        ),
        (
            "def q() -> tuple[Sql, list[object]]:\n    return 'SELECT ?', [1]\n"
            "def f(con):\n    s, p = q()\n    con.execute(f'SELECT * FROM ({s})', p)",
            False,
        ),
        (
            "def q() -> tuple[Sql, list[object]]:\n    return 'SELECT ?', [1]\n"
            "def f(con):\n    s, p = q()\n    con.execute(f'SELECT * FROM ({p})')",
            True,
        ),
        (
            "def q(v) -> Sql:\n    return 'SELECT 1'\n"
            "def f(con, v):\n    s, p = other()\n    con.execute(f'SELECT {s}')",
            True,
        ),
    ],
)
def test_rules(code: str, flagged: bool) -> None:
    assert bool(findings(code, "x.py")) is flagged


def test_no_user_text_is_formatted_into_sql() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    sources = [p.read_text(encoding="utf-8") for p in paths]
    returning = sql_functions(sources)
    assert "members_query" in returning  # the read functions are seen (or the rule is moot)
    found: list[str] = []
    for path, source in zip(paths, sources, strict=True):
        found += findings(source, str(path.relative_to(PACKAGE)), returning)
    assert not found, "\n".join(found)
