"""The README's tour runs as written.

Every shell command of the tour's ``sh`` block runs here, in order, through ``bash`` in an empty
folder, with the installed ``jingzhun`` command, on an 800-user simulated shop (the demo's
smallest: the tour's ``--users 20000`` is the one word changed). A command that reads a file
from outside says so (``# needs FILE``): the file this repository holds is copied in, the ones
to download are skipped, and the test knows how many. The error example below the tour is run
too, and must print the very line the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The shop the tour runs on here: the demo's minimum size, so the tour takes about 2 minutes.
USERS = 800
SYNTH = "jingzhun synth --users 20000 --out shop --segment"
#: Outside files this repository holds, and where.
IN_REPOSITORY = {
    "cdnow.csv": ROOT / "tests" / "data" / "cdnow_sample.csv",
    "online_retail.csv": ROOT / "tests" / "data" / "online_retail.csv",  # an excerpt
}
#: Outside files to download: their commands are skipped.
DOWNLOADS = {"u.data"}
_NEEDS = re.compile(r"#[^\n]*\bneeds (\S+)$")


def tour_commands(readme: str) -> list[str]:
    """The commands of the tour's ``sh`` block: comments and blank lines left out, a line
    ending in a backslash joined with the next (as the shell joins them)."""
    block = re.search(r"^## A tour\n.*?^```sh\n(.*?)^```", readme, re.S | re.M)
    assert block, "README.md has no '## A tour' section with an sh block"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    assert not current, "the tour ends inside a continued line"
    return commands


def needs(command: str) -> str | None:
    """The outside file a command reads, as its comment names it (``# … needs FILE``)."""
    found = _NEEDS.search(command.splitlines()[-1])
    return found.group(1) if found else None


def bash(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for name in ("JINGZHUN_DB", "JINGZHUN_CONFIG"):
        env.pop(name, None)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_commands_are_read_as_the_shell_reads_them() -> None:
    readme = (
        "## A tour\n\n```sh\n# a comment\njingzhun status\n\n"
        "jingzhun a --x 1 \\\n    --y 2   # needs f.csv\n  # indented comment\n```\n"
    )
    commands = tour_commands(readme)
    assert commands == ["jingzhun status", "jingzhun a --x 1 \\\n    --y 2   # needs f.csv"]
    assert [needs(c) for c in commands] == [None, "f.csv"]


def test_every_outside_file_says_where_it_comes_from() -> None:
    readme = README.read_text(encoding="utf-8")
    wanted = {needs(c) for c in tour_commands(readme)} - {None}
    assert wanted == DOWNLOADS | set(IN_REPOSITORY)
    sources = readme[readme.index("### Files from outside") :]
    sources = sources[: sources.index("\n\n", sources.index("- `"))]
    for name in wanted:
        (entry,) = [line for line in sources.split("\n- ") if line.startswith(f"`{name}`")]
        assert "https://" in entry or "tests/data/" in entry, entry
    for path in IN_REPOSITORY.values():
        assert path.is_file() and str(path.relative_to(ROOT)) in sources


@pytest.mark.slow
def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    commands = tour_commands(README.read_text(encoding="utf-8"))
    assert commands[0] == SYNTH, "the tour starts by simulating the shop it runs on"
    skipped: list[str] = []
    for command in commands:
        file = needs(command)
        if file in DOWNLOADS:
            skipped.append(file)
            continue
        if file in IN_REPOSITORY:
            shutil.copyfile(IN_REPOSITORY[file], tmp_path / file)
        ran = bash(
            command.replace(SYNTH, f"jingzhun synth --users {USERS} --out shop --segment"),
            tmp_path,
        )
        shown = f"{command}\nexit {ran.returncode}\nstderr: {ran.stderr[-2000:]}"
        assert ran.returncode == 0, shown
        assert "error:" not in ran.stderr and "Traceback" not in ran.stderr, shown
        # No warning either (no unknown item id, no dropped feature), but for the odd user of
        # the past campaign whose rows the simulator made dirty on purpose.
        for line in (w for w in ran.stderr.splitlines() if w.startswith("warning:")):
            odd = re.match(r"warning: ([\d,]+) of the ([\d,]+) users in --assignments", line)
            assert odd, shown
            assert 100 * int(odd[1].replace(",", "")) < int(odd[2].replace(",", "")), shown
    assert sorted(skipped) == sorted(DOWNLOADS)  # exactly the downloads
    for written in ("jingzhun.duckdb", "members.parquet", "fix.jsonl", "report.html"):
        assert (tmp_path / written).is_file(), written


def test_the_error_example_is_the_real_message(tmp_path: Path) -> None:
    readme = README.read_text(encoding="utf-8")
    example = re.search(r"^```\n(\$ head -2 orders\.csv\n.*?)^```", readme, re.S | re.M)
    assert example, "README.md lost its error example"
    _, header, row, command, expected = example.group(1).splitlines()
    (tmp_path / "orders.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    ran = bash(command.removeprefix("$ "), tmp_path)
    assert (ran.returncode, ran.stdout, ran.stderr.strip()) == (2, "", expected)
