"""A small expression language for tag rules and computed-trait filters.

One language serves both: ``monetary >= p90(monetary)`` (a tag rule over profile traits) and
``event = 'order_completed' and category = 'beauty'`` (a filter over events). Expressions are
parsed into a tree, checked against the names the context allows, and compiled to Ibis, so the
same rule runs on DuckDB now and Spark later.

Grammar (lowest precedence first)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=") sum
                    | ["not"] "in" "(" literal ("," literal)* ")"
                    | ["not"] "between" sum "and" sum
                    | "is" ["not"] "null"
                    | "contains" sum)?
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | atom
    atom    := NUMBER | STRING | "true" | "false" | "null" | NAME | NAME "(" args ")" | "(" expr ")"

Functions: ``p1``…``p99`` (quantile over all rows: ``p90(monetary)``), ``quantile(x, q)``,
``median(x)``, ``mean(x)``, ``min(x)``, ``max(x)`` — the aggregate helpers see the whole
table, so ``monetary >= p90(monetary)`` means "in the top decile" — and the row functions
``abs(x)``, ``lower(s)``, ``coalesce(x, y, …)``, ``days_since(ts)``. ``list contains value``
tests list traits (``top_categories contains 'beauty'``). Keywords are case-insensitive.

Every error names the position (1-based column) in the expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jingzhun.errors import InputError

# -- tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<op><=|>=|!=|<>|==|[=<>+\-*/%(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "between", "is", "null", "true", "false", "contains"}


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | op | name | keyword | end
    text: str
    pos: int  # 0-based offset

    @property
    def value(self) -> Any:
        if self.kind == "number":
            return float(self.text) if any(c in self.text for c in ".eE") else int(self.text)
        if self.kind == "string":
            body = self.text[1:-1]
            if self.text[0] == "'":
                body = body.replace("''", "'")
            return re.sub(r"\\(.)", r"\1", body)
        return self.text


class ExprError(InputError):
    """A syntax or name error in an expression, with its position."""


def _fail(source: str, pos: int, message: str, where: str) -> ExprError:
    return ExprError(f"{where}: {message} at column {pos + 1} of {source!r}")


#: Largest whole number a literal may be (DuckDB's BIGINT).
MAX_INT = 2**63 - 1


def _check_number(text: str, source: str, pos: int, where: str) -> None:
    """Refuse a literal no column can hold: an infinite float, an integer past BIGINT."""
    if any(c in text for c in ".eE"):
        if not math.isfinite(float(text)):
            raise _fail(source, pos, f"the number {text[:30]} is too large", where)
    # The length first: int() of a 5,000-digit text is an error of its own.
    elif len(text.lstrip("0")) > 19 or int(text) > MAX_INT:
        raise _fail(source, pos, f"the number {text[:30]} is larger than {MAX_INT:,}", where)


def tokenize(source: str, where: str = "expression") -> list[Token]:
    tokens, pos = [], 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if not m:
            raise _fail(source, pos, f"unexpected character {source[pos]!r}", where)
        kind = m.lastgroup or "ws"
        text = m.group()
        if kind == "name" and text.lower() in _KEYWORDS:
            kind, text = "keyword", text.lower()
        if kind == "number":
            _check_number(text, source, pos, where)
        if kind != "ws":
            tokens.append(Token(kind, text, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


# -- tree --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    kind: str  # literal | name | call | unary | binary | in | between | isnull | contains
    pos: int
    value: Any = None  # literal value, name, operator or function name
    args: tuple[Node, ...] = ()
    negated: bool = False

    def names(self) -> set[str]:
        """Every name the expression refers to."""
        found = {self.value} if self.kind == "name" else set()
        for a in self.args:
            found |= a.names()
        return found


_COMPARE = {
    "=": "==",
    "==": "==",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
AGGREGATES = {"quantile", "median", "mean", "min", "max"}
ROW_FUNCTIONS = {"abs": 1, "lower": 1, "coalesce": -1, "days_since": 1}
_PERCENTILE = re.compile(r"^p([1-9][0-9]?)$")


#: Deepest nesting (parentheses, calls, unary operators) an expression may have.
MAX_DEPTH = 50
#: Most levels the parsed tree may have. Operator chains count (``a + b + c`` is two levels),
#: except ``and`` and ``or`` chains, which are built balanced (a thousand ``or`` terms are ten
#: levels). Everything that walks the tree (name checks, Ibis, SQL) recurses once per level.
MAX_HEIGHT = 100
#: Most nodes (names, literals, operators, calls) an expression may have.
MAX_NODES = 20_000


class _Parser:
    def __init__(self, source: str, where: str) -> None:
        self.source = source
        self.where = where
        self.tokens = tokenize(source, where)
        self.i = 0
        self.depth = 0

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the expression nests deeper than {MAX_DEPTH} levels")

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> ExprError:
        t = tok or self.tok
        return _fail(self.source, t.pos, message, self.where)

    def take(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        if self.tok.kind == kind and (text is None or self.tok.text == text):
            return self.take()
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        t = self.accept(kind, text)
        if t is None:
            found = "the end" if self.tok.kind == "end" else repr(self.tok.text)
            raise self.error(f"expected {what}, found {found}")
        return t

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        node = self.or_()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.text!r}")
        self.check_size(node)
        return node

    def check_size(self, root: Node) -> None:
        """Refuse a tree too tall or too large to walk (without recursing itself)."""
        stack, count = [(root, 1)], 0
        while stack:
            node, level = stack.pop()
            count += 1
            if level > MAX_HEIGHT:
                raise _fail(
                    self.source,
                    node.pos,
                    f"the expression is more than {MAX_HEIGHT} levels deep (each operator in a "
                    "chain such as a + b + c counts); shorten it, or use x in (…) for a list",
                    self.where,
                )
            if count > MAX_NODES:
                raise _fail(
                    self.source,
                    node.pos,
                    f"the expression has more than {MAX_NODES:,} terms; shorten it",
                    self.where,
                )
            stack.extend((a, level + 1) for a in node.args)

    def or_(self) -> Node:
        self.nested()
        try:
            return self._or()
        finally:
            self.depth -= 1

    def _or(self) -> Node:
        return self.chain("or", self.and_)

    def and_(self) -> Node:
        return self.chain("and", self.not_)

    def chain(self, op: str, operand: Callable[[], Node]) -> Node:
        """``x op y op z …`` as a balanced tree: as deep as log2 of its length, not its length
        (``and`` and ``or`` are associative, in SQL's three-valued logic too)."""
        nodes, ops = [operand()], []
        while t := self.accept("keyword", op):
            ops.append(t.pos)
            nodes.append(operand())

        def balanced(lo: int, hi: int) -> Node:  # nodes[lo..hi], joined by ops[lo..hi-1]
            if lo == hi:
                return nodes[lo]
            mid = (lo + hi) // 2
            return Node("binary", ops[mid], op, (balanced(lo, mid), balanced(mid + 1, hi)))

        return balanced(0, len(nodes) - 1)

    def not_(self) -> Node:
        if t := self.accept("keyword", "not"):
            self.nested()
            try:
                return Node("unary", t.pos, "not", (self.not_(),))
            finally:
                self.depth -= 1
        return self.compare()

    def compare(self) -> Node:
        left = self.sum()
        t = self.tok
        if t.kind == "op" and t.text in _COMPARE:
            self.take()
            return Node("binary", t.pos, _COMPARE[t.text], (left, self.sum()))
        negated = False
        if (
            t.kind == "keyword"
            and t.text == "not"
            and self.tokens[self.i + 1].text in ("in", "between")
        ):
            self.take()
            negated = True
            t = self.tok
        if self.accept("keyword", "in"):
            self.expect("op", "(", "'(' after in")
            items = [self.literal()]
            while self.accept("op", ","):
                items.append(self.literal())
            self.expect("op", ")", "')' to close the list")
            return Node("in", t.pos, None, (left, *items), negated)
        if self.accept("keyword", "between"):
            low = self.sum()
            self.expect("keyword", "and", "'and' in between … and …")
            return Node("between", t.pos, None, (left, low, self.sum()), negated)
        if self.accept("keyword", "is"):
            neg = bool(self.accept("keyword", "not"))
            self.expect("keyword", "null", "'null' after is")
            return Node("isnull", t.pos, None, (left,), neg)
        if self.accept("keyword", "contains"):
            return Node("contains", t.pos, None, (left, self.sum()))
        return left

    def literal(self) -> Node:
        t = self.tok
        sign = -1 if self.accept("op", "-") else 1
        t2 = self.tok
        if t2.kind in ("number", "string"):
            self.take()
            value = t2.value
            if sign < 0:
                if t2.kind != "number":
                    raise self.error("a minus sign needs a number", t2)
                value = -value
            return Node("literal", t.pos, value)
        if t2.kind == "keyword" and t2.text in ("true", "false", "null") and sign > 0:
            self.take()
            return Node("literal", t.pos, {"true": True, "false": False, "null": None}[t2.text])
        raise self.error("expected a number or a string in the list")

    def sum(self) -> Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in "+-":
            t = self.take()
            node = Node("binary", t.pos, t.text, (node, self.product()))
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            t = self.take()
            node = Node("binary", t.pos, t.text, (node, self.unary()))
        return node

    def unary(self) -> Node:
        if t := self.accept("op", "-"):
            self.nested()
            try:
                return Node("unary", t.pos, "-", (self.unary(),))
            finally:
                self.depth -= 1
        return self.atom()

    def atom(self) -> Node:
        t = self.tok
        if t.kind in ("number", "string"):
            self.take()
            return Node("literal", t.pos, t.value)
        if t.kind == "keyword" and t.text in ("true", "false", "null"):
            self.take()
            return Node("literal", t.pos, {"true": True, "false": False, "null": None}[t.text])
        if t.kind == "name":
            self.take()
            if self.accept("op", "("):
                args: list[Node] = []
                if not self.accept("op", ")"):
                    args.append(self.or_())
                    while self.accept("op", ","):
                        args.append(self.or_())
                    self.expect("op", ")", "')' to close the call")
                return self._call(t, args)
            return Node("name", t.pos, t.text)
        if self.accept("op", "("):
            node = self.or_()
            self.expect("op", ")", "')'")
            return node
        found = "the end" if t.kind == "end" else repr(t.text)
        raise self.error(f"expected a value, found {found}")

    def _call(self, t: Token, args: list[Node]) -> Node:
        name = t.text.lower()
        m = _PERCENTILE.match(name)
        if m:
            if len(args) != 1:
                raise self.error(f"{name}() takes one trait", t)
            q = Node("literal", t.pos, int(m.group(1)) / 100)
            return Node("call", t.pos, "quantile", (args[0], q))
        if name in AGGREGATES:
            want = 2 if name == "quantile" else 1
            if len(args) != want:
                raise self.error(f"{name}() takes {want} argument{'s' if want > 1 else ''}", t)
            if name == "quantile" and not (
                args[1].kind == "literal"
                and isinstance(args[1].value, int | float)
                and 0 < args[1].value < 1
            ):
                raise self.error("quantile()'s second argument must be a number between 0 and 1", t)
            return Node("call", t.pos, name, tuple(args))
        if name in ROW_FUNCTIONS:
            arity = ROW_FUNCTIONS[name]
            if arity >= 0 and len(args) != arity:
                raise self.error(f"{name}() takes {arity} argument{'s' if arity != 1 else ''}", t)
            if arity < 0 and not args:
                raise self.error(f"{name}() needs arguments", t)
            return Node("call", t.pos, name, tuple(args))
        known = [*sorted(AGGREGATES | set(ROW_FUNCTIONS)), "p1…p99"]
        raise self.error(f"unknown function {t.text}(); use one of {', '.join(known)}", t)


def parse(source: str, *, where: str = "expression") -> Node:
    """Parse ``source``; ``where`` names it in errors (e.g. "tag rule 'high_value'")."""
    if not isinstance(source, str):
        raise ExprError(f"{where}: expected an expression string, got {type(source).__name__}")
    return _Parser(source, where).parse()


def check_names(node: Node, source: str, allowed: Mapping[str, Any], where: str) -> None:
    """Fail on the first name ``allowed`` does not have, naming its position."""

    def walk(n: Node) -> None:
        if n.kind == "name" and n.value not in allowed:
            import difflib

            close = difflib.get_close_matches(n.value, list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(source, n.pos, f"unknown name {n.value!r}{hint}", where)
        for a in n.args:
            walk(a)

    walk(node)


# -- time differences, the same on every engine ------------------------------------------------

#: Microseconds in a day.
DAY_US = 86_400_000_000


def _as_timestamp(x: Any) -> Any:
    return x.cast("timestamp") if x.type().is_date() else x


def micros_between(later: Any, earlier: Any) -> Any:
    """Microseconds from ``earlier`` to ``later``, exactly (int64; negative when ``later`` is
    the earlier time). A date counts from its midnight.

    The one form of a time difference that DuckDB and Spark both compute to the microsecond:
    Ibis compiles it to ``date_diff('MICROSECOND', earlier, later)`` on DuckDB and to
    ``DATEDIFF(MICROSECOND, earlier, later)`` (Spark's ``timestampdiff``) on Spark. Not
    ``epoch_seconds()``: DuckDB's ``epoch()`` keeps the fraction of a second but Spark's
    ``unix_timestamp()`` drops it, so decays and day counts would differ between the engines.
    """
    return _as_timestamp(later).delta(_as_timestamp(earlier), unit="microsecond")


def seconds_between(later: Any, earlier: Any) -> Any:
    """Seconds from ``earlier`` to ``later`` with their fraction (float64), on every engine."""
    return micros_between(later, earlier).cast("float64") / 1e6


def days_between(later: Any, earlier: Any) -> Any:
    """Whole days from ``earlier`` to ``later``, rounded down (int64), on every engine."""
    return (micros_between(later, earlier) // DAY_US).cast("int64")


# -- compile to Ibis ---------------------------------------------------------------------------


def check_no_aggregates(node: Node, source: str, where: str) -> None:
    """Fail on an aggregate helper (p90, mean …): a row filter cannot use one."""
    if node.kind == "call" and node.value in AGGREGATES:
        raise _fail(
            source, node.pos, f"{node.value}() looks across rows; it cannot be used here", where
        )
    for a in node.args:
        check_no_aggregates(a, source, where)


def compile_condition(node: Node, table: Any, *, source: str, where: str, now: Any = None) -> Any:
    """Compile ``node`` and check that it is a condition (a boolean)."""
    compiled = compile_ibis(node, table, now=now, source=source, where=where)
    if not compiled.type().is_boolean():
        raise _fail(
            source,
            node.pos,
            f"{source!r} is not a condition (it gives {compiled.type()}); compare it, e.g. '… > 0'",
            where,
        )
    return compiled


def _kind(t: Any) -> str:
    if t.is_numeric():
        return "number"
    if t.is_string():
        return "text"
    if t.is_boolean():
        return "boolean"
    if t.is_temporal():
        return "time"
    return str(t)


def compile_ibis(
    node: Node,
    table: Any,
    *,
    now: Any = None,
    columns: Callable[[str], Any] | None = None,
    source: str | None = None,
    where: str = "expression",
) -> Any:
    """The Ibis expression for ``node`` over ``table``.

    ``columns`` resolves a name to an Ibis column (default: ``table[name]``); aggregate helpers
    reduce over the whole ``table``; ``now`` is the timestamp ``days_since`` counts from. With
    ``source``, a type error (text compared with a number, say) names its position.
    """
    import ibis

    col = columns or (lambda name: table[name])

    def fail(n: Node, message: str) -> ExprError:
        if source is None:
            return ExprError(f"{where}: {message}")
        return _fail(source, n.pos, message, where)

    def start(n: Node) -> Node:
        """The node's leftmost token: where the failing piece of the source begins."""
        first = n
        for a in n.args if isinstance(n.args, tuple) else ():
            if isinstance(a, Node):
                a = start(a)
                if a.pos < first.pos:
                    first = a
        return first

    def c(n: Node) -> Any:
        try:
            return build(n)
        except ExprError:
            raise
        except Exception as exc:  # Ibis refuses mismatched types: say where
            raise fail(
                start(n), f"cannot evaluate this ({str(exc).splitlines()[0][:120]})"
            ) from exc

    def apply(n: Node, fn: Callable[[], Any], *operands: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            kinds = " and ".join(_kind(o.type()) for o in operands)
            if n.kind == "binary":  # quote the operator as written ('=' or '==')
                op = (
                    re.match(r"(?i)(?:and|or)\b|<>|[<>!=]=?|\S", source[n.pos :])
                    if source
                    else None
                )
                what = repr(op.group() if op else n.value)
            else:
                what = f"{n.value}()"
            raise fail(start(n), f"cannot apply {what} to {kinds}") from exc

    def build(n: Node) -> Any:
        if n.kind == "literal":
            return ibis.literal(n.value) if n.value is not None else ibis.null()
        if n.kind == "name":
            return col(n.value)
        if n.kind == "unary":
            a = c(n.args[0])
            return ~a if n.value == "not" else -a
        if n.kind == "binary":
            a, b = c(n.args[0]), c(n.args[1])
            op = n.value
            if op in ("and", "or"):
                return apply(n, (lambda: a & b) if op == "and" else (lambda: a | b), a, b)
            return apply(
                n,
                {
                    "==": lambda: a == b,
                    "!=": lambda: a != b,
                    "<": lambda: a < b,
                    "<=": lambda: a <= b,
                    ">": lambda: a > b,
                    ">=": lambda: a >= b,
                    "+": lambda: a + b,
                    "-": lambda: a - b,
                    "*": lambda: a * b,
                    "/": lambda: a / b,
                    "%": lambda: a % b,
                }[op],
                a,
                b,
            )
        if n.kind == "in":
            a = c(n.args[0])
            values = [x.value for x in n.args[1:]]
            kinds = {
                "text" if isinstance(v, str) else "boolean" if isinstance(v, bool) else "number"
                for v in values
                if v is not None
            }
            have = _kind(a.type())
            if any(k != have for k in kinds):
                raise fail(
                    n,
                    f"the list holds {' and '.join(sorted(kinds))} values but the left side is {have}",
                )
            expr = a.isin(values)
            return ~expr if n.negated else expr
        if n.kind == "between":
            a, lo, hi = (c(x) for x in n.args)
            expr = a.between(lo, hi)
            return ~expr if n.negated else expr
        if n.kind == "isnull":
            a = c(n.args[0])
            return a.notnull() if n.negated else a.isnull()
        if n.kind == "contains":
            return c(n.args[0]).contains(c(n.args[1]))
        if n.kind == "call":
            name = n.value
            if name == "quantile":
                return c(n.args[0]).quantile(n.args[1].value)
            if name in ("median", "mean", "min", "max"):
                return getattr(c(n.args[0]), name)()
            if name in ("abs", "lower"):
                a = c(n.args[0])
                return apply(n, lambda: getattr(a, name)(), a)
            if name == "coalesce":
                return ibis.coalesce(*(c(a) for a in n.args))
            if name == "days_since":
                if now is None:
                    raise fail(n, "days_since() has no reference time here")
                # Whole days, as recency_days counts them, to the microsecond on every engine.
                a = c(n.args[0])
                return apply(n, lambda: days_between(now, a), a)
        raise AssertionError(n)  # pragma: no cover - the parser builds nothing else

    return c(node)
