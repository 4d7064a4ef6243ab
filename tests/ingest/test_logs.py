"""Foreign log files read for offline analysis: values never become SQL, the reader opens
only the file it was given."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from jingzhun.errors import InputError
from jingzhun.ingest.logs import read_file, separator


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.tsv"
    path.write_text("u1\ti1\t5\nu2\ti2\t3\n", encoding="utf-8")
    return path


def test_tab_spellings_and_sniffing(log: Path) -> None:
    for sep in ("\t", "\\t", "tab"):
        frame = read_file(log, "--interactions", sep=sep, header=False)
        assert frame.shape == (2, 3)
    assert read_file(log, "--interactions", header=False).shape == (2, 3)
    assert separator(None) is None and separator(";") == ";"


def test_sep_injection_reads_and_writes_nothing(log: Path, tmp_path: Path) -> None:
    """The issue's attack: close read_csv's string, COPY a table out, reopen. It was pasted
    into SQL (``delim='{sep}'``) and wrote the file."""
    stolen = tmp_path / "x.csv"
    sep = (
        f"\t'); COPY (SELECT 42 AS pii) TO '{stolen}'; "
        f"SELECT * FROM read_csv('{log}', header=false, delim='\t"
    )
    with pytest.raises(InputError, match=r"^--sep .* is not a field separator"):
        read_file(log, "--interactions", sep=sep, header=False)
    assert not stolen.exists()


@pytest.mark.parametrize(
    "sep", ["", "'", '"', "\\", "\x00", "\n", "\x1b", ",,,,,", "a" * 100_000, "\u202e"]
)
def test_bad_separators_are_refused(log: Path, sep: str) -> None:
    with pytest.raises(InputError, match="--sep"):
        read_file(log, "--interactions", sep=sep, header=False)


def test_the_reader_opens_no_other_file(log: Path) -> None:
    """Defence in depth: even SQL that reached the reader could not open another file."""
    from jingzhun.store.store import file_reader

    con = file_reader(log)
    try:
        assert (
            con.execute("SELECT count(*) FROM read_csv(?, header=false)", [str(log)]).fetchone()[0]
            == 2
        )
        for attack in (
            "SELECT * FROM read_csv('/etc/passwd')",
            f"COPY (SELECT 1) TO '{log.parent / 'w.csv'}'",
            f"ATTACH '{log.parent / 'other.duckdb'}' AS o",
            "SET enable_external_access = true",
            "INSTALL httpfs",
        ):
            with pytest.raises(duckdb.Error, match=r"(?i)permission|disabled|locked"):
                con.execute(attack)
    finally:
        con.close()
    assert sorted(p.name for p in log.parent.iterdir()) == ["log.tsv"]


def test_missing_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--transactions .*: no such file"):
        read_file(tmp_path / "nope.csv", "--transactions")
