"""The package's import graph: no cycles, and the layering of DESIGN.md (issue 13).

Every ``import`` and ``from … import`` of every module under ``src/jingzhun`` counts, at module
level or inside a function, with relative imports resolved; only ``if TYPE_CHECKING:`` blocks
are left out (they never run). ``from pkg import name`` is an edge to the module ``pkg.name``
when there is one, else to ``pkg``. Importing a submodule also runs its parent package's
``__init__``; that implied edge is not counted (every package would otherwise form a cycle
with the modules it re-exports).
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import jingzhun

ROOT = Path(jingzhun.__file__).resolve().parent
PACKAGE = "jingzhun"


# -- the graph --------------------------------------------------------------------------------


@dataclass
class Graph:
    """Modules of the package, their imports of each other (with the line of the first such
    import) and the third-party top-level packages each imports."""

    edges: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    external: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    #: Imports of a jingzhun name that is neither a module nor a package: module → name → line.
    missing: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))


def _module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file under ``root``."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere in the tree but under ``if TYPE_CHECKING``
    (its ``else`` branch runs, so it counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _note(where: dict[str, int], name: str, line: int) -> None:
    """Keep the first line at which a module imports ``name``."""
    where[name] = min(line, where.get(name, line))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name ``from … import`` reads from, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    base = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _packages(modules: Set[str]) -> set[str]:
    """Every package that holds a module, with or without an ``__init__.py`` (``jingzhun.segment``
    has none: a namespace package, no code of its own)."""
    return {m.rsplit(".", i)[0] for m in modules for i in range(1, m.count(".") + 1)}


def build_graph(root: Path = ROOT) -> Graph:
    """The import graph of the package at ``root``."""
    files = _module_files(root)
    modules = set(files)
    namespaces = _packages(modules) - modules
    graph = Graph()
    for module, path in files.items():
        graph.edges.setdefault(module, {})  # every module is a node, importing or not
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, module, is_package)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                top = target.partition(".")[0]
                if top != PACKAGE:
                    if top:
                        _note(graph.external[module], top, node.lineno)
                    continue
                if target in modules:
                    _note(graph.edges[module], target, node.lineno)
                elif target not in namespaces:
                    _note(graph.missing[module], target, node.lineno)
    return graph


def strongly_connected(edges: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components that hold a cycle (two or more nodes, or one
    that imports itself), each sorted, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return sorted(found)


def cycle_in(
    component: list[str], edges: Mapping[str, Mapping[str, int]], start: str | None = None
) -> list[str]:
    """A shortest cycle through ``start`` (default: the component's first module), as a path
    that ends where it starts (breadth-first inside the component)."""
    start = component[0] if start is None else start
    inside = set(component)
    parents: dict[str, str] = {}
    queue = [start]
    for node in queue:
        for child in sorted(edges.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if child in inside and child not in parents:
                parents[child] = node
                queue.append(child)
    raise AssertionError(f"{component} is not a cycle")  # pragma: no cover - Tarjan's promise


def covering_cycles(
    component: list[str], edges: Mapping[str, Mapping[str, int]]
) -> list[list[str]]:
    """Shortest cycles until every module of the component is on one: what to untangle."""
    cycles: list[list[str]] = []
    covered: set[str] = set()
    for module in component:
        if module not in covered:
            cycles.append(cycle_in(component, edges, module))
            covered.update(cycles[-1])
    return cycles


def describe(path: list[str], edges: Mapping[str, Mapping[str, int]]) -> str:
    """``a → b (a.py line 3) → a (b.py line 9)``: each import with the line that makes it."""
    steps = [path[0]]
    for source, target in itertools.pairwise(path):
        steps.append(f"{target} (line {edges[source][target]} of {source})")
    return " → ".join(steps)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph()


# -- the detector, on small graphs -----------------------------------------------------------


def _edges(pairs: str) -> dict[str, dict[str, int]]:
    """``"a>b b>c"`` as an edge mapping (line numbers 1, 2, …)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for line, pair in enumerate(pairs.split(), start=1):
        source, target = pair.split(">")
        out[source][target] = line
        out.setdefault(target, {})  # every node is a key
    return out


@pytest.mark.parametrize(
    ("pairs", "components"),
    [
        ("a>b b>c", []),
        ("a>b b>c a>c", []),  # a diamond's two paths are not a cycle
        ("a>b b>a", [["a", "b"]]),
        ("a>a", [["a"]]),
        ("a>b b>c c>a c>d", [["a", "b", "c"]]),
        ("a>b b>a c>d d>e e>c e>f", [["a", "b"], ["c", "d", "e"]]),
        ("a>b b>c c>b c>d d>a x>y", [["a", "b", "c", "d"]]),
    ],
)
def test_the_detector_finds_exactly_the_cycles(pairs: str, components: list[list[str]]) -> None:
    assert strongly_connected(_edges(pairs)) == components


def test_a_cycle_is_described_with_its_import_lines() -> None:
    edges = _edges("a>b b>c c>a c>d")
    path = cycle_in(["a", "b", "c"], edges)
    assert path == ["a", "b", "c", "a"]
    assert describe(path, edges) == "a → b (line 1 of a) → c (line 2 of b) → a (line 3 of c)"


def test_every_module_of_a_tangle_is_shown_on_a_cycle() -> None:
    # Two loops through b: the shortest through a misses d, so d gets its own.
    edges = _edges("a>b b>a b>c c>d d>b")
    assert strongly_connected(edges) == [["a", "b", "c", "d"]]
    assert covering_cycles(["a", "b", "c", "d"], edges) == [["a", "b", "a"], ["c", "d", "b", "c"]]


def test_the_detector_survives_a_long_chain() -> None:
    # Recursion would stop at Python's limit; the walk is iterative.
    n = 5000
    edges = {f"m{i}": {f"m{i + 1}": 1} for i in range(n)} | {f"m{n}": {"m0": 1}}
    assert [len(c) for c in strongly_connected(edges)] == [n + 1]


def test_the_graph_reads_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "ns").mkdir()  # a namespace package: no __init__.py
    files = {
        "__init__.py": "from jingzhun.sub import helper\n",
        "sub/__init__.py": "from . import helper\nfrom .helper import name\n",
        "sub/helper.py": "def f():\n    from .. import top\n    import jingzhun.ns.leaf\n",
        "top.py": (
            "from typing import TYPE_CHECKING\nimport typer\n"
            "if TYPE_CHECKING:\n    from jingzhun.sub import name\n"
            "else:\n    import jingzhun.hidden\n"
        ),
        "hidden.py": "import jingzhun.ns\nfrom jingzhun.gone import x\n",
        "ns/leaf.py": "from jingzhun.sub.helper import f\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    graph = build_graph(pkg)
    assert {m: dict(e) for m, e in graph.edges.items()} == {
        "jingzhun": {"jingzhun.sub.helper": 1},
        "jingzhun.sub": {"jingzhun.sub.helper": 1},
        "jingzhun.sub.helper": {"jingzhun.top": 2, "jingzhun.ns.leaf": 3},
        "jingzhun.top": {"jingzhun.hidden": 6},  # not the TYPE_CHECKING import (a cycle)
        "jingzhun.hidden": {},
        "jingzhun.ns.leaf": {"jingzhun.sub.helper": 1},
    }
    assert dict(graph.external) == {"jingzhun.top": {"typing": 1, "typer": 2}}
    assert dict(graph.missing) == {"jingzhun.hidden": {"jingzhun.gone": 2}}
    assert strongly_connected(graph.edges) == [["jingzhun.ns.leaf", "jingzhun.sub.helper"]]


# -- the package --------------------------------------------------------------------------------


def test_every_import_names_a_module_that_exists(graph: Graph) -> None:
    # An edge to a module that is not there would leave a cycle through it unseen.
    wrong = [
        f"{module} imports {name} (line {line})"
        for module, names in sorted(graph.missing.items())
        for name, line in sorted(names.items())
    ]
    assert not wrong, "imports of modules that do not exist: " + "; ".join(wrong)


def test_no_module_imports_one_that_imports_it_back(graph: Graph) -> None:
    cycles = [
        describe(path, graph.edges)
        for component in strongly_connected(graph.edges)
        for path in covering_cycles(component, graph.edges)
    ]
    assert not cycles, "import cycles: " + "; ".join(cycles)


def layer(module: str) -> str:
    """The part of the package a module belongs to: ``jingzhun.ingest.schema`` → ``ingest``,
    ``jingzhun.config`` → ``config``, the package itself → ``jingzhun``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


#: The ground floor: shared definitions every stage and config.py import.
GROUND = frozenset({"contracts", "errors", "checks", "interrupt"})
#: What config and the helpers beside it leave to every layer above them.
BASE = GROUND | {"config", "outputs"}
#: What each part of the core may import besides itself: the ground floor imports only itself;
#: config, no stage; then the store, and the stages in the order data flows through them
#: (store ← ingest ← profile ← segment · recommend · predict ← report). segment, recommend
#: and predict import each other only through CROSS_STAGE below.
ALLOWED: dict[str, frozenset[str]] = {
    "contracts": GROUND,
    "errors": GROUND,
    "checks": GROUND,
    "interrupt": GROUND,
    "config": GROUND,
    "outputs": GROUND,
    "store": BASE,
    "synth": BASE,
    "ingest": BASE | {"store"},
    "profile": BASE | {"store", "ingest"},
    "segment": BASE | {"store", "ingest", "profile"},
    "recommend": BASE | {"store", "ingest", "profile"},
    "predict": BASE | {"store", "ingest", "profile"},
    "report": BASE | {"store", "ingest", "profile", "segment", "recommend", "predict"},
    # The act stage: audiences from every analysis stage's tables, through their read functions.
    "campaign": BASE | {"store", "ingest", "profile", "segment", "recommend", "predict"},
    # Campaign statistics and reports: above every stage, the campaign stage included.
    "evaluate": BASE
    | {"store", "ingest", "profile", "segment", "recommend", "predict", "campaign"},
    # The protect stage: a person's rows in every stage's tables, found from the store's own
    # catalogue; reads personal data through ingest's contacts and quarantine.
    "privacy": BASE | {"store", "ingest"},
}
#: The imports between sibling stages today's code needs, module by module.
CROSS_STAGE: dict[tuple[str, str], str] = {
    ("jingzhun.predict.labels", "jingzhun.segment.features"): (
        "predict's features at each cutoff are the numeric profile traits segment selects"
    ),
    ("jingzhun.recommend.interactions", "jingzhun.segment.runs"): (
        "segment popularity reads the members of the segment run [recommend] segment_run names"
    ),
    ("jingzhun.recommend.serving", "jingzhun.segment.runs"): (
        "serving says which segment a user is in, from the run the model was trained with"
    ),
    ("jingzhun.recommend.rules", "jingzhun.segment.read"): (
        "a 'popular in your segment' reason names the segment as the segment stage words its "
        "portrait names in each language (label_text)"
    ),
}
#: Above every stage: the public API, the Workspace facade, the demo. They may import any part
#: of the core, never a front end.
TOP = frozenset({"jingzhun", "workspace", "demo"})
#: Front ends: only they may parse with Typer or print with Rich (the coming api/ and web/ join
#: them with FastAPI and Uvicorn). Nothing of the core imports them.
FRONT_ENDS = frozenset({"cli", "api", "web", "__main__"})
UI_PACKAGES = frozenset({"typer", "click", "rich", "fastapi", "starlette", "uvicorn"})


def _allowed(source: str, target: str) -> bool:
    """Whether the layering lets module ``source`` import module ``target``."""
    here, there = layer(source), layer(target)
    if here == there or here in FRONT_ENDS:
        return True
    if here in TOP:
        return there not in FRONT_ENDS
    return there in ALLOWED[here] or (source, target) in CROSS_STAGE


def test_each_layer_imports_only_the_layers_below_it(graph: Graph) -> None:
    wrong = [
        f"{source} imports {target} (line {line})"
        for source, targets in sorted(graph.edges.items())
        for target, line in sorted(targets.items())
        if not _allowed(source, target)
    ]
    assert not wrong, "imports against the layering: " + "; ".join(wrong)


def test_the_allowed_cross_stage_imports_are_still_needed(graph: Graph) -> None:
    # An exception nobody needs any more is removed, so it cannot hide a new import.
    stale = [pair for pair in CROSS_STAGE if pair[1] not in graph.edges.get(pair[0], {})]
    assert stale == []


def test_every_part_of_the_package_has_a_place_in_the_layering(graph: Graph) -> None:
    # A new stage or module must be placed in ALLOWED (or be a front end or on top), so the
    # layering test cannot pass by not knowing it.
    placed = set(ALLOWED) | TOP | FRONT_ENDS
    assert sorted({layer(m) for m in graph.edges} - placed) == []


def test_the_core_never_imports_a_user_interface_library(graph: Graph) -> None:
    wrong = [
        f"{module} imports {name} (line {line})"
        for module, names in sorted(graph.external.items())
        if layer(module) not in FRONT_ENDS
        for name, line in sorted(names.items())
        if name in UI_PACKAGES
    ]
    assert not wrong, "the core imports a user-interface library: " + "; ".join(wrong)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("jingzhun.config", "jingzhun.contracts.events", True),
        ("jingzhun.config", "jingzhun.ingest.schema", False),  # config imports no stage
        ("jingzhun.contracts.time", "jingzhun.errors", True),
        ("jingzhun.contracts.time", "jingzhun.config", False),
        ("jingzhun.store.store", "jingzhun.ingest.pipeline", False),
        ("jingzhun.ingest.pipeline", "jingzhun.profile.build", False),
        ("jingzhun.profile.build", "jingzhun.segment.runs", False),
        ("jingzhun.recommend.interactions", "jingzhun.segment.runs", True),  # in CROSS_STAGE
        ("jingzhun.recommend.data", "jingzhun.segment.runs", False),
        ("jingzhun.segment.runs", "jingzhun.predict.labels", False),
        ("jingzhun.report.html", "jingzhun.workspace", False),
        ("jingzhun.workspace", "jingzhun.report", True),
        ("jingzhun.workspace", "jingzhun.cli.common", False),
        ("jingzhun.cli.profile", "jingzhun.workspace", True),
    ],
)
def test_the_layering_rules(source: str, target: str, allowed: bool) -> None:
    assert _allowed(source, target) is allowed
