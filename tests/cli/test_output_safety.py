"""What the command line prints and writes, against hostile data and hostile paths (issue 12).

**Terminal and markup injection.** Ids, names, reasons and paths come from the user's data;
the CLI prints them through Rich, which reads ``[...]`` as markup and passes escape sequences
to the terminal. Every such value goes through ``jingzhun.cli.common.text`` (control and bidi
characters made visible, markup escaped), the error writer makes control characters visible,
and ``--json`` escapes what JSON would leave raw. A store whose user and item ids are
``hx[/]``, ``hx[bold red]x[/]``, ``a<ESC>[31mred`` and ``<RLO>evil`` is ingested and built
through the real CLI; the commands that print those ids print them as written or visibly
escaped, exit 0, and never emit a raw ESC or bidi override. A source walk keeps every
``out.print``/``err.print`` in ``src/jingzhun/cli`` honest.

**Output paths.** ``--out`` may not name the store, its WAL, its model folder, a folder, a
device, a FIFO, a link to any of them, or a name too long for the file system: each is one
error line naming ``--out`` (exit 2), the store's bytes unchanged, and no file created. A new
path still works. One case per command family that writes a user-named file.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli.subprocess_cli import Ran, copy_store, error_line, human, one_json, run

SRC = Path(__file__).resolve().parents[2] / "src" / "jingzhun"

#: User ids that break a terminal or Rich markup, and how each must appear on screen.
HOSTILE = {
    "close_tag": ("hx[/]", "hx[/]"),
    "style_tag": ("hx[bold red]x[/]", "hx[bold red]x[/]"),
    "ansi": ("a\x1b[31mred", "a\\x1b[31mred"),
    "bidi": ("\u202eevil", "\\u202eevil"),
}
#: Item ids carrying markup, shown in every table of items.
ITEMS = ["i[red]0", "i[/]1", "i[link=http://x]2"]
#: What must never reach the terminal raw.
RAW = ("\x1b", "\u202e", "\x07", "\x9b")


def _copy(store: Path, folder: Path) -> Path:
    """A copy of the store with its model folder (``recommend show`` loads the model)."""
    db = copy_store(store, folder)
    models = store.with_name(store.name + ".models")
    if models.exists():  # stores keep their models inside since the registry (issue 13)
        shutil.copytree(models, db.with_name(db.name + ".models"))
    return db


def _raw_free(res: Ran) -> None:
    for ch in RAW:
        assert ch not in res.stdout, f"raw {ch!r} on stdout: {res.stdout[:300]!r}"
        assert ch not in res.stderr, f"raw {ch!r} on stderr: {res.stderr[:300]!r}"
    assert "Traceback" not in res.stderr, res.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Events of 24 users (4 hostile ids) and 3 hostile item ids, one bad row, built by the CLI:
    profiles, a popularity model and an RFM segment run."""
    folder = tmp_path_factory.mktemp("hostile_store")
    users = [f"u{n:02d}" for n in range(20)] + [uid for uid, _ in HOSTILE.values()]
    with open(folder / "events.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["event", "ts", "user_id", "item_id", "order_id", "price", "quantity"])
        for n, user in enumerate(users):
            item = ITEMS[n % len(ITEMS)]
            day = 1 + n % 27
            w.writerow(["product_viewed", f"2026-03-{day:02d}T09:00:00Z", user, item, "", "", ""])
            w.writerow(
                ["order_completed", f"2026-03-{day:02d}T10:00:00Z", user, item, f"o{n}", "10", "1"]
            )
        # Quarantined: an unknown event whose name and row carry markup and an escape.
        w.writerow(["bad[/]ev\x1b[2J", "2026-03-01T00:00:00Z", "q[bold]x[/]", "i1", "", "", ""])
    db = folder / "store.duckdb"
    for args in (
        ("ingest", "events", "events.csv", "--json"),
        ("profile", "build", "--json"),
        ("recommend", "train", "--model", "pop", "--json"),
        ("segment", "run", "--method", "rfm", "--json"),
    ):
        one_json(run(folder, *args, db=db))
    assert not db.with_name(db.name + ".wal").exists()
    return db


# -- the mechanism ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("hx[/]", "hx\\[/]"),
        ("hx[bold red]x[/]", "hx\\[bold red]x\\[/]"),
        ("a\x1b[31mred", "a\\x1b[31mred"),  # no markup left to escape after the ESC goes
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
        ("tab\tnl\ncr\rnul\0del\x7fcsi\x9b", "tab\\x09nl\\x0acr\\x0dnul\\x00del\\x7fcsi\\x9b"),
        ("\u200f\u061c\u2028", "\\u200f\\u061c\\u2028"),
        ("plain 中文 :fire: ok", "plain 中文 :fire: ok"),
        (42, "42"),
    ],
)
def test_text_makes_any_value_safe_markup(value: object, shown: str) -> None:
    from jingzhun.cli.common import text

    assert text(value) == shown


@pytest.mark.parametrize(
    "value", ["hx[/]", "hx[bold red]x[/]", "x\\", "x\\\\", "a\\[b]", "[link=http://e]y", ":fire:"]
)
def test_text_renders_back_to_the_value(value: str) -> None:
    """Printed by the CLI's own console (markup on, no emoji codes), it reads as written."""
    from jingzhun.cli.common import out, text

    for template, expected in (
        ("{}", value),
        ("[bold]{}[/] and [dim]more[/]", f"{value} and more"),
    ):
        with out.capture() as captured:
            out.print(template.format(text(value)))
        assert captured.get().rstrip("\n") == expected


def _print_args_unsafe(path: Path) -> list[str]:
    """``out.print``/``err.print`` arguments that put a value into markup unescaped."""

    def is_text(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "text"
        )

    def safe(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) or is_text(node):
            return True
        if isinstance(node, ast.JoinedStr):
            return all(
                isinstance(v, ast.Constant)
                or (
                    isinstance(v, ast.FormattedValue)
                    and (v.format_spec is not None or safe(v.value))
                )
                for v in node.values
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return safe(node.left) and safe(node.right)
        if isinstance(node, ast.IfExp):
            return safe(node.body) and safe(node.orelse)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant)
            and len(node.args) == 1
            and isinstance(node.args[0], ast.GeneratorExp | ast.ListComp)
        ):
            return safe(node.args[0].elt)
        return False

    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "print"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("out", "err")
        ):
            bad += [
                f"{path.name}:{a.lineno}: {ast.unparse(a)[:90]}" for a in node.args if not safe(a)
            ]
    return bad


def test_every_printed_value_goes_through_text() -> None:
    """A format field in a printed string is a formatted number or ``text(...)``: a value from
    the data never reaches Rich's markup parser raw (``common.py`` itself prints tables built
    from escaped cells)."""
    files = [p for p in sorted((SRC / "cli").glob("*.py")) if p.name != "common.py"]
    assert len(files) >= 5
    bad = [line for p in files for line in _print_args_unsafe(p)]
    assert not bad, "print data through text():\n" + "\n".join(bad)


# -- hostile ids on screen --------------------------------------------------------------------


@pytest.fixture(scope="module")
def shown(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Every printing command of this module, run once on one copy of the store."""
    db = _copy(store, tmp_path_factory.mktemp("shown"))
    commands: dict[str, tuple[str, ...]] = {}
    for key, (uid, _) in HOSTILE.items():
        commands[f"profile-{key}"] = ("profile", "show", uid)
        commands[f"recommend-{key}"] = ("recommend", "show", uid)
    commands["profile-json-bidi"] = ("profile", "show", HOSTILE["bidi"][0], "--json")
    commands["quarantine-show"] = ("quarantine", "show")
    commands["quarantine-list"] = ("quarantine", "list")
    commands["segment-export"] = ("segment", "export", "--out", "m[/]\x1b[1m.csv")
    commands["bad-out"] = ("profile", "export", "--out", "a\x1b[31m\u202e\x07.bad")
    return {name: run(db.parent, *args, db=db) for name, args in commands.items()}


@pytest.mark.parametrize("command", ["profile", "recommend"])
@pytest.mark.parametrize("key", list(HOSTILE))
def test_hostile_ids_are_printed_as_written(shown: dict[str, Ran], command: str, key: str) -> None:
    res = shown[f"{command}-{key}"]
    out = human(res)
    _raw_free(res)
    first = out.splitlines()[0]
    assert first.startswith(HOSTILE[key][1]), first


def test_item_ids_in_tables_are_printed_as_written(shown: dict[str, Ran]) -> None:
    out = "".join(
        human(shown[f"{command}-{key}"]) for command in ("profile", "recommend") for key in HOSTILE
    )
    for item in ITEMS:
        assert item in out, f"{item!r} missing from the tables"


def test_quarantined_rows_are_printed_as_written(shown: dict[str, Ran]) -> None:
    for name in ("quarantine-show", "quarantine-list"):
        _raw_free(shown[name])
        human(shown[name])
    out = shown["quarantine-show"].stdout
    assert "'bad[/]ev\\x1b[2J' is not a known event" in out
    assert '"user_id":"q[bold]x[/]"' in out


def test_a_written_path_is_printed_as_written(shown: dict[str, Ran]) -> None:
    res = shown["segment-export"]
    _raw_free(res)
    assert "to m[/]\\x1b[1m.csv." in human(res)


def test_an_error_line_shows_control_characters_visibly(shown: dict[str, Ran]) -> None:
    res = shown["bad-out"]
    _raw_free(res)
    error_line(res, "--out a\\x1b[31m\\u202e\\x07.bad", "unknown extension")


def test_json_escapes_bidi_controls_and_keeps_the_value(shown: dict[str, Ran]) -> None:
    res = shown["profile-json-bidi"]
    _raw_free(res)
    assert "\\u202eevil" in res.stdout
    assert one_json(res)["user_id"] == HOSTILE["bidi"][0]


# -- output paths -----------------------------------------------------------------------------

#: Each command family that writes a file the user names, as a function of the path.
FAMILIES = {
    "quarantine": ("quarantine", "export", "--out"),
    "report": ("report", "--out"),
    "profile": ("profile", "export", "--out"),
    "segment": ("segment", "export", "--out"),
    "synth": ("synth", "--users", "60", "--out"),
}
#: A path for each hostile case; {db} is the store, the rest is set up in the job's folder.
CASES = {
    "store": ("{db}", "the store itself"),
    "wal": ("{db}.wal", "write-ahead log"),
    "models": ("{db}.models/recommend/x.csv", "model folder"),
    "folder": ("a_folder", "folder"),
    "fifo": ("pipe", ""),
    "link_to_store": ("link.csv", "the store itself"),
    "link_to_device": ("dev-link.csv", ""),
    "long": ("x" * 5000, "file name too long"),
}
#: A path that must work, per family.
GOOD = {
    "quarantine": "rows.jsonl",
    "report": "r.html",
    "profile": "p.csv",
    "segment": "m.parquet",
    "synth": "shop",
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _prepare(folder: Path, db: Path) -> None:
    (folder / "a_folder").mkdir()
    os.mkfifo(folder / "pipe")
    (folder / "link.csv").symlink_to(db)
    # A link to a device, not the device: a writer that replaced the link must not take
    # /dev/full down with it on the machine running the tests.
    (folder / "dev-link.csv").symlink_to("/dev/full")
    (db.with_name(db.name + ".models") / "recommend").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def written(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every family x case (and the good path), each on its own copy, two at a time."""
    base = tmp_path_factory.mktemp("outs")
    jobs = [(f, c) for f in FAMILIES for c in [*CASES, "good"]]

    def one(job: tuple[str, str]) -> dict:
        family, case = job
        folder = base / f"{family}-{case}"
        db = _copy(store, folder)
        _prepare(folder, db)
        target = GOOD[family] if case == "good" else CASES[case][0].format(db=db)
        before = (_digest(db), _tree(folder))
        res = run(folder, *FAMILIES[family], target, db=db)
        return {
            "res": res,
            "folder": folder,
            "db": db,
            "target": target,
            "before": before,
            "after": (_digest(db), _tree(folder)),
        }

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(one, jobs), strict=True))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_hostile_out_paths_are_refused(written: dict, family: str, case: str) -> None:
    if family == "synth" and case == "folder":
        pytest.skip("synth writes into a folder: an existing folder is its normal --out")
    r = written[(family, case)]
    line = error_line(r["res"], "--out")
    assert "Traceback" not in r["res"].stderr
    assert len(line) < 400, "a long name is cut in the message"
    if family != "synth" or case in ("store", "wal", "models", "long"):
        assert CASES[case][1] in line, line
    assert r["after"][0] == r["before"][0], "the store's bytes changed"
    assert r["after"][1] == r["before"][1], (
        f"files appeared or vanished: {r['after'][1] ^ r['before'][1]}"
    )
    assert (r["folder"] / "pipe").is_fifo()
    assert (r["folder"] / "dev-link.csv").is_symlink()
    assert not r["db"].with_name(r["db"].name + ".wal").exists()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_new_out_path_still_works(written: dict, family: str) -> None:
    r = written[(family, "good")]
    human(r["res"])
    target = r["folder"] / r["target"]
    assert target.exists()
    if family != "synth":
        assert target.is_file() and target.stat().st_size > 0
    else:
        assert (target / "events.parquet").is_file()
    assert not [p for p in r["folder"].rglob("*") if p.name.endswith(".tmp")]
    assert r["after"][0] == r["before"][0]


@pytest.mark.parametrize("command", [("synth", "--users", "50"), ("demo", "--users", "200")])
def test_an_empty_out_folder_is_refused_not_the_working_folder(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Typer turned --out '' into Path('.'): synth wrote its files into the working folder."""
    res = run(tmp_path, *command, "--out", "")
    error_line(res, "--out is empty")
    assert list(tmp_path.iterdir()) == []
