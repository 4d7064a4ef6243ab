"""The targets table ``make bench`` writes into docs/benchmarks.md (benchmarks/summary.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import summary  # noqa: E402


@pytest.mark.parametrize("bench", sorted(summary.VALUES))
def test_every_figure_the_table_names_is_in_the_committed_results(bench: str) -> None:
    doc = json.loads((summary.RESULTS / f"{bench}.json").read_text(encoding="utf-8"))
    for criterion, spec in summary.VALUES[bench].items():
        assert criterion in doc["met"], f"{bench}: no criterion {criterion!r}"
        figure = summary.value(doc, spec)
        assert isinstance(figure, int | float) and not isinstance(figure, bool), (
            f"{bench}.{criterion}: {spec} gives {figure!r}"
        )
    for criterion, key in summary.TARGETS.get(bench, {}).items():
        assert key in doc["target"], f"{bench}.{criterion}: no target {key!r}"


def _result(folder: Path, name: str, **payload: object) -> None:
    doc = {"benchmark": name, "measured_at": "2026-12-07T10:21:00+00:00", **payload}
    (folder / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")


def test_the_table_gives_target_figure_and_verdict_and_names_what_did_not_run(
    tmp_path: Path,
) -> None:
    _result(
        tmp_path,
        "profile",
        target={"build_seconds": 30.0},
        results={"jingzhun": {"build_seconds": 31.5, "lookup_ms": {"p99": 2.9}}},
        met={"build_seconds": False, "lookup_p99_ms": True},
    )
    _result(tmp_path, "segment", met={"k_within_one_of_personas": {"kmeans": True, "gmm": False}})
    _result(tmp_path, "scale-2026-12-07-1539", met={"x": True})  # a dated copy: not listed
    text = summary.render(tmp_path)
    assert "scale-2026" not in text
    assert "| profile | 2026-12-07 10:21 | build_seconds | 30 | 31.5 | **no** |" in text
    assert "|  |  | lookup_p99_ms |  | 2.9 | yes |" in text
    assert (
        "| segment | 2026-12-07 10:21 | k_within_one_of_personas |  | missed by gmm | **no** |"
        in text
    )
    assert text.startswith("1 of 3 criteria met")
    assert "| server | not run |" in summary.render(tmp_path, ["profile", "server"])


def test_writing_replaces_only_the_table_and_refuses_a_file_without_its_markers(
    tmp_path: Path,
) -> None:
    _result(
        tmp_path,
        "synth",
        target={"seconds": 60},
        result={"seconds": 46.5},
        runs=[],
        met={"seconds": True},
    )
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# B\n\nintro\n\n{summary.START}\nold table\n{summary.END}\n\n## Rest\n", encoding="utf-8"
    )
    summary.write(doc, tmp_path)
    first = doc.read_text(encoding="utf-8")
    assert "old table" not in first and "| synth |" in first
    assert first.startswith("# B\n\nintro\n\n") and first.endswith(f"{summary.END}\n\n## Rest\n")
    summary.write(doc, tmp_path)
    assert doc.read_text(encoding="utf-8") == first  # the same results, the same file
    bare = tmp_path / "bare.md"
    bare.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="summary markers are missing"):
        summary.write(bare, tmp_path)
    assert bare.read_text(encoding="utf-8") == "# no markers\n"
