"""Settings: jingzhun.toml loading, its errors, and the store path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jingzhun.config import Settings, load_settings, resolve_db_path
from jingzhun.errors import InputError
from jingzhun.workspace import Workspace


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts in an empty folder with no jingzhun variables set."""
    monkeypatch.delenv("JINGZHUN_CONFIG", raising=False)
    monkeypatch.delenv("JINGZHUN_DB", raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_a_file() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.source is None
    assert settings.store.memory_limit == "1GB"
    assert settings.store.threads is None
    assert settings.ingest.event_map == {}
    assert settings.ingest.max_line_bytes == 16 << 20
    assert settings.ingest.max_future_hours == 24
    assert settings.clean.outlier_method == "mad"
    assert settings.clean.burst_events_per_minute == 30


def test_implicit_jingzhun_toml_in_the_working_folder_is_read(write) -> None:
    write(
        "jingzhun.toml",
        '[store]\nmemory_limit = "512MB"\n\n[ingest]\nmax_future_hours = 2\n\n'
        '[ingest.event_map]\npurchase = "order_completed"\n\n[clean]\noutlier_method = "iqr"\n',
    )
    settings = load_settings()
    assert settings.source == Path("jingzhun.toml")
    assert settings.store.memory_limit == "512MB"
    assert settings.ingest.max_future_hours == 2
    assert settings.ingest.event_map == {"purchase": "order_completed"}
    assert settings.clean.outlier_method == "iqr"
    # untouched sections keep their defaults
    assert settings.ingest.max_line_bytes == Settings().ingest.max_line_bytes


def test_explicit_missing_config_file_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(InputError, match=re.escape("nope.toml")) as info:
        load_settings(missing)
    assert "does not exist" in str(info.value)
    assert info.value.exit_code == 2
    # an explicitly named file must exist even when ./jingzhun.toml would do
    (tmp_path / "jingzhun.toml").write_text("[store]\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape("nope.toml")):
        load_settings(str(missing))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[ingest]\nmax_futur_hours = 3\n", "max_futur_hours"),
        ("[stor]\nmemory_limit = '1GB'\n", "stor"),
        ("colour = 'blue'\n", "colour"),
        ("[clean]\nburst_per_minute = 10\n", "burst_per_minute"),
    ],
)
def test_unknown_key_is_an_error_naming_it(write, text: str, key: str) -> None:
    path = write("settings.toml", text)
    with pytest.raises(InputError) as info:
        load_settings(path)
    message = str(info.value)
    assert key in message
    assert "settings.toml" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[ingest]\nmax_line_bytes = 10\n", "max_line_bytes"),  # below the 1 KiB floor
        ("[store]\nthreads = 0\n", "threads"),
        ("[clean]\noutlier_method = 'zscore'\n", "outlier_method"),
        ("[ingest]\nmax_future_hours = 'soon'\n", "max_future_hours"),
    ],
)
def test_invalid_values_are_errors_naming_the_key(write, text: str, where: str) -> None:
    path = write("settings.toml", text)
    with pytest.raises(InputError, match=where):
        load_settings(path)


def test_event_map_with_an_unknown_target_event_is_rejected_naming_it(write) -> None:
    path = write(
        "settings.toml", '[ingest.event_map]\npurchase = "order_completed"\nbuy = "bought_it"\n'
    )
    with pytest.raises(InputError) as info:
        load_settings(path)
    message = str(info.value)
    assert "bought_it" in message
    assert "event_map" in message
    assert "purchase" not in message  # the valid entry is not blamed


def test_toml_syntax_error_names_the_file(write) -> None:
    path = write("broken.toml", "[ingest\nmax_future_hours = 3\n")
    with pytest.raises(InputError, match=re.escape("broken.toml")) as info:
        load_settings(path)
    assert "line 1" in str(info.value)


def test_jingzhun_config_environment_variable_is_honoured(
    monkeypatch: pytest.MonkeyPatch, write
) -> None:
    env_file = write("conf/env.toml", "[ingest]\nmax_future_hours = 5\n")
    # a ./jingzhun.toml is there too: the variable wins over it
    write("jingzhun.toml", "[ingest]\nmax_future_hours = 7\n")
    monkeypatch.setenv("JINGZHUN_CONFIG", str(env_file))
    settings = load_settings()
    assert settings.ingest.max_future_hours == 5
    assert settings.source == env_file
    # an explicit path wins over the variable
    explicit = write("explicit.toml", "[ingest]\nmax_future_hours = 9\n")
    assert load_settings(explicit).ingest.max_future_hours == 9
    # a variable naming a missing file is an error, not a silent fallback
    monkeypatch.setenv("JINGZHUN_CONFIG", str(env_file.with_name("gone.toml")))
    with pytest.raises(InputError, match=re.escape("gone.toml")):
        load_settings()


def test_resolve_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_db_path(None) == Path("jingzhun.duckdb")
    assert resolve_db_path("") == Path("jingzhun.duckdb")
    monkeypatch.setenv("JINGZHUN_DB", str(tmp_path / "env.duckdb"))
    assert resolve_db_path(None) == tmp_path / "env.duckdb"
    assert resolve_db_path("given.duckdb") == Path("given.duckdb")


def test_settings_reach_duckdb_and_ingest(write, tmp_path: Path) -> None:
    """The loaded settings are the ones the store and the ingest actually use."""
    config = write(
        "shop.toml",
        '[store]\nthreads = 1\nmemory_limit = "300MB"\n\n[ingest.event_map]\nbuy = "order_completed"\n',
    )
    events = write(
        "events.csv",
        "event_id,event,ts,user_id,order_id,item_id,price\n"
        "e1,buy,2025-03-01T10:00:00,u1,o1,sku1,10\n"
        "e2,sell,2025-03-01T10:00:00,u1,o2,sku1,10\n",
    )
    with Workspace.open(tmp_path / "s.duckdb", config=config) as ws:
        assert ws.settings.source == config
        assert ws.store.sql("SELECT current_setting('threads')").fetchone()[0] == 1
        limit = ws.store.sql("SELECT current_setting('memory_limit')").fetchone()[0]
        # DuckDB reports e.g. '286.1 MiB' for 300MB (the default 1GB would be ~954 MiB)
        assert "MiB" in limit and float(limit.split()[0]) < 400
        result = ws.ingest("events", [events])
        assert (result.inserted, result.quarantined) == (1, 1)
        assert ws.store.sql("SELECT event FROM events").fetchall() == [("order_completed",)]
        reason = ws.store.sql("SELECT reason FROM quarantine").fetchone()[0]
        assert "sell" in reason
