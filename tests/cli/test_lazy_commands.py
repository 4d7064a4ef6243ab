"""The command line imports only the command it runs (``build_app(only=…)``), and finds that
command after the root's options; anything else builds the whole tree."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from jingzhun.cli import COMMANDS, build_app, command_named


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["ingest", "events", "f.csv"], "ingest"),
        (["--db", "s.duckdb", "profile", "build"], "profile"),
        (["--db=s.duckdb", "--engine", "spark", "clean"], "clean"),
        (["--config", "x.toml", "--spark-master", "local[2]", "tags", "list"], "tags"),
        (["--db", "status"], None),  # --db takes "status" as its value: no command named
        (["--help"], None),
        (["--version"], None),
        (["--db", "s.duckdb", "--unknown", "status"], None),
        (["nosuch", "x"], None),
        ([], None),
    ],
)
def test_the_command_is_found_after_the_root_options(argv: list[str], named: str | None) -> None:
    assert command_named(argv) == named


def test_one_command_s_tree_has_that_command_only() -> None:
    whole = typer.main.get_command(build_app())
    assert sorted(whole.commands) == sorted(name for name, *_ in COMMANDS)
    for name, *_ in COMMANDS:
        assert list(typer.main.get_command(build_app(name)).commands) == [name]


def test_a_command_does_not_import_the_others_modules() -> None:
    """``jingzhun ingest --help`` imports no other command's module (nor Ibis: ingest needs
    none, and it is 0.2 s of every ingest's start-up)."""
    code = (
        "import sys; from jingzhun.cli import main\n"
        "try: main(['ingest', '--help'])\n"
        "except SystemExit: pass\n"
        "mods = sorted(m for m in sys.modules if m.startswith('jingzhun.cli.'))\n"
        "print(mods, 'ibis' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip().splitlines()[-1]
        == "['jingzhun.cli.common', 'jingzhun.cli.ingest'] False"
    )
