"""The output-path guard and the atomic writer (``jingzhun.outputs``) on real files.

Every command that writes a file the user names goes through these two functions, so the
rules are tested here once, on real paths: the store, its WAL and model folder (by any
spelling or link), folders, devices, FIFOs, sockets, names too long, and writes that fail.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import duckdb
import pytest

from jingzhun.errors import InputError
from jingzhun.outputs import (
    MAX_NAME_BYTES,
    atomic_write,
    check_output_dir,
    check_output_path,
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A real (closed) DuckDB store file with one table."""
    db = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    return db


def refused(path: object, *needles: str, **kwargs: object) -> str:
    with pytest.raises(InputError) as err:
        check_output_path(path, **kwargs)  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(kwargs.get("flag", "--out")))
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# -- what is refused --------------------------------------------------------------------------


def test_a_new_file_in_an_existing_folder_is_fine(tmp_path: Path, store: Path) -> None:
    assert (
        check_output_path(tmp_path / "rows.jsonl", store_path=store)
        == (tmp_path / "rows.jsonl").resolve()
    )


def test_an_existing_regular_file_may_be_replaced(tmp_path: Path, store: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("a\n")
    assert check_output_path(old, store_path=store) == old.resolve()


@pytest.mark.parametrize(
    "spelling",
    ["{db}", "{folder}/./{name}", "{folder}/sub/../{name}", "{folder}//{name}"],
)
def test_the_store_itself_is_refused_however_spelled(
    tmp_path: Path, store: Path, spelling: str
) -> None:
    (tmp_path / "sub").mkdir()
    path = spelling.format(db=store, folder=tmp_path, name=store.name)
    refused(path, "--out", "the store itself", store_path=store)


def test_the_store_is_refused_through_a_relative_path(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    refused(store.name, "the store itself", store_path=Path(store.name))
    refused(store.name, "the store itself", store_path=store)


def test_a_symlink_or_hard_link_to_the_store_is_refused(tmp_path: Path, store: Path) -> None:
    (tmp_path / "soft.jsonl").symlink_to(store)
    os.link(store, tmp_path / "hard.jsonl")
    refused(tmp_path / "soft.jsonl", "the store itself", store_path=store)
    refused(tmp_path / "hard.jsonl", "the store itself", store_path=store)


def test_a_store_reached_through_a_linked_folder_is_refused(tmp_path: Path, store: Path) -> None:
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    refused(tmp_path / "alias" / store.name, "the store itself", store_path=store)


def test_the_wal_is_refused_even_when_absent(tmp_path: Path, store: Path) -> None:
    wal = store.with_name(store.name + ".wal")
    assert not wal.exists()
    refused(wal, "write-ahead log", store_path=store)


def test_the_model_folder_and_anything_in_it_is_refused(tmp_path: Path, store: Path) -> None:
    models = store.with_name(store.name + ".models")
    (models / "recommend").mkdir(parents=True)
    refused(models, "model folder", store_path=store)
    refused(models / "recommend" / "pop-1.npz", "model folder", store_path=store)
    refused(models / "new" / "x.html", "model folder", store_path=store)


def test_any_duckdb_database_is_refused_without_knowing_the_store(store: Path) -> None:
    refused(store, "DuckDB database")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, "is a folder")
    refused(f"{tmp_path}/new/", "is a folder")
    refused(".", "is a folder")
    refused("..", "is a folder")


def test_a_character_device_is_refused() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    refused("/dev/full", "/dev/full", "character device")
    refused("/dev/null", "character device")


def test_a_fifo_and_a_link_to_one_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "to-pipe.html").symlink_to(fifo)
    refused(fifo, "FIFO")
    refused(tmp_path / "to-pipe.html", "FIFO")


def test_a_socket_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a socket path is limited to ~100 bytes: keep it relative
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("sock")
        refused("sock", "socket")
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("a" * 5000, "5,000 bytes"),
        ("a" * (MAX_NAME_BYTES + 1), "256 bytes"),
        ("画" * 100, "300 bytes"),  # 100 characters, but 300 bytes: the limit is in bytes
        ("d/" * 2100 + "x", "bytes"),
    ],
)
def test_names_too_long_are_refused_in_one_short_line(name: str, needle: str) -> None:
    message = refused(name, "file name too long", needle)
    assert len(message) < 300  # the name is cut, not repeated


def test_the_longest_allowed_name_is_fine(tmp_path: Path) -> None:
    check_output_path(tmp_path / ("a" * MAX_NAME_BYTES))


def test_empty_and_nul_are_refused() -> None:
    refused("", "empty")
    refused("a\0b.csv", "NUL")


def test_a_file_used_as_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    refused(tmp_path / "plain" / "out.csv", "is not a folder")
    refused(tmp_path / "plain" / "deeper" / "out.csv", "is not a folder", create_parents=True)


def test_a_missing_folder_is_refused_unless_the_command_creates_folders(tmp_path: Path) -> None:
    refused(tmp_path / "a" / "b" / "out.txt", "cannot write the file there", "does not exist")
    refused(f"{tmp_path}/a/../b/out.txt", "does not exist")  # no "a" to climb out of
    refused(tmp_path / "a" / "r.html", "cannot write the report there", what="the report")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_created_by_the_write_when_allowed(tmp_path: Path) -> None:
    target = check_output_path(tmp_path / "a" / "b" / "out.txt", create_parents=True)
    assert not (tmp_path / "a").exists()  # checking creates nothing
    with atomic_write(target, "w") as fh:
        fh.write("ok")
    assert target.read_text() == "ok"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_file_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro.csv"
    ro.write_text("keep")
    ro.chmod(0o444)
    refused(ro, "read-only")


def test_the_flag_is_named(tmp_path: Path) -> None:
    refused(tmp_path, "--file", flag="--file")


# -- folders ----------------------------------------------------------------------------------


def test_check_output_dir(tmp_path: Path, store: Path) -> None:
    assert check_output_dir(tmp_path / "new") == (tmp_path / "new").resolve()
    assert check_output_dir(tmp_path) == tmp_path.resolve()
    for path, needle in [
        (store, "the store itself"),
        (store.with_name(store.name + ".wal"), "write-ahead log"),
        (store.with_name(store.name + ".models"), "model folder"),
        ("a" * 300, "file name too long"),
    ]:
        with pytest.raises(InputError, match=needle):
            check_output_dir(path, store_path=store)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"--out .* is not a folder"):
        check_output_dir(tmp_path / "file")


# -- the atomic writer ------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as fh:
        fh.write(b"new")
        assert target.read_bytes() == b"old"  # nothing under the final name until the end
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_what_it_made(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as fh:
        fh.write("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]

    deep = tmp_path / "x" / "y" / "out.txt"
    with pytest.raises(RuntimeError), atomic_write(deep, "w"):
        raise RuntimeError("writer failed")
    assert not (tmp_path / "x").exists()  # folders it created are gone again


def test_an_os_error_while_writing_is_one_input_error_naming_the_flag(tmp_path: Path) -> None:
    with (
        pytest.raises(InputError, match=r"cannot write --file .*No space left"),
        atomic_write(tmp_path / "o.txt", "w", flag="--file"),
    ):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_name_taken_by_a_link_is_never_followed(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file is created exclusively: a planted link is skipped, not written."""
    before = store.read_bytes()
    tokens = iter(["planted", "fresh"])
    monkeypatch.setattr("jingzhun.outputs.secrets.token_hex", lambda _n: next(tokens))
    (tmp_path / ".jingzhun-planted.tmp").symlink_to(store)
    with atomic_write(tmp_path / "out.txt", "w") as fh:
        fh.write("ok")
    assert store.read_bytes() == before
    assert (tmp_path / "out.txt").read_text() == "ok"


def test_the_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "o.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "o.txt").stat().st_mode) == 0o644


def test_writing_through_a_link_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with atomic_write(check_output_path(link), "w") as fh:
        fh.write("new")
    assert link.is_symlink()
    assert real.read_text() == "new"
