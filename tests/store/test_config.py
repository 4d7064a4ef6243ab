"""Settings: jingzhun.toml loading, its errors, and the store path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

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


# -- numbers: NaN, infinities, negative and absurd values (issue 12) ---------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[profile]\nhalf_life_days = nan\n", "[profile] half_life_days must be a finite number"),
        ("[profile]\nhalf_life_days = inf\n", "[profile] half_life_days must be a finite number"),
        (
            "[profile]\nhalf_life_days = 1e-300\n",
            "[profile] half_life_days must be at least 1/24 (one hour), not 1e-300",
        ),
        ("[profile]\nhalf_life_days = -1\n", "[profile] half_life_days must be at least"),
        ("[profile]\nhalf_life_days = 1e300\n", "[profile] half_life_days must be at most 36,500"),
        ("[profile.weights]\nproduct_viewed = inf\n", "[profile] weights product_viewed must be"),
        ("[profile.weights]\nproduct_viewed = nan\n", "[profile] weights product_viewed must be"),
        ("[profile.weights]\nproduct_viewed = 1e300\n", "[profile] weights product_viewed must be"),
        ("[profile.score]\nfrequency = -inf\n", "[profile] score frequency must be a finite"),
        ("[profile.score]\nfrequency = 1e9\n", "[profile] score frequency must be at most"),
        (
            "[[profile.traits]]\nname = 'recent'\nagg = 'count'\nwindow_days = inf\n",
            "[profile] traits #1 (recent) window_days must be a finite number",
        ),
        (
            "[[profile.traits]]\nname = 'recent'\nagg = 'count'\nwindow_days = 1e-9\n",
            "[profile] traits #1 (recent) window_days must be at least 1/24 (one hour)",
        ),
        ("[store]\nthreads = 100000000\n", "[store] threads must be at most 256"),
        ("[store]\nmemory_limit = '1e30GB'\n", "[store] memory_limit '1e30GB' is not a size"),
        ("[store]\nmemory_limit = '-1GB'\n", "[store] memory_limit '-1GB' is not a size"),
        ("[store]\nmemory_limit = 'lots'\n", "[store] memory_limit 'lots' is not a size"),
        ("[store]\nmemory_limit = '1KB'\n", "[store] memory_limit '1KB' is out of range"),
        ("[store]\nmemory_limit = '5000TB'\n", "[store] memory_limit '5000TB' is out of range"),
        ("[clean]\noutlier_threshold = inf\n", "[clean] outlier_threshold must be a finite"),
        ("[clean]\noutlier_threshold = 1e9\n", "[clean] outlier_threshold must be at most 1,000"),
        ("[clean]\nburst_events_per_minute = 10000000000\n", "[clean] burst_events_per_minute"),
        ("[ingest]\nmax_future_hours = inf\n", "[ingest] max_future_hours must be a finite"),
        ("[ingest]\nmax_line_bytes = 100000000000\n", "[ingest] max_line_bytes must be at most"),
        ("[recommend]\nhalf_life_days = nan\n", "[recommend] half_life_days must be a finite"),
        ("[recommend.weights]\nproduct_viewed = inf\n", "[recommend] weights product_viewed"),
        ("[recommend.boost]\nsku1 = -1.0\n", "[recommend] boost sku1 must be at least 0"),
        ("[recommend.params.als]\nfactors = nan\n", "[recommend] params als factors must be a"),
        ("[predict]\nhorizon_days = inf\n", "[predict] horizon_days must be a finite number"),
        ("[predict]\nmessage_cost = nan\n", "[predict] message_cost must be a finite number"),
        ("[predict.params.lightgbm]\nlearning_rate = inf\n", "[predict] params lightgbm"),
    ],
)
def test_bad_numbers_are_one_line_errors_naming_the_key(write, text: str, fragment: str) -> None:
    path = write("settings.toml", text)
    with pytest.raises(InputError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith("settings.toml: ") or "settings.toml: " in message
    assert fragment in message, message
    assert "\n" not in message


def _float_fields(model: type, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every float setting: (section and key, how its TOML value is nested)."""
    import typing

    def has_float(annotation: object) -> bool:
        return annotation is float or any(has_float(a) for a in typing.get_args(annotation))

    found = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _float_fields(annotation, (*path, name))
        elif has_float(annotation) and origin is not list:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            kind = "scalar"
            for a in args if origin is not dict else [annotation]:
                if typing.get_origin(a) is dict:
                    inner = typing.get_args(a)[1]
                    kind = "map of maps" if typing.get_origin(inner) is dict else "map"
            found.append(((*path, name), kind))
    return found


def test_every_float_setting_refuses_nan_and_infinities(write) -> None:
    """The guard: a float setting added later cannot forget to refuse NaN and inf."""
    fields = _float_fields(Settings)
    assert len(fields) >= 20, fields  # the walk finds the settings
    for (section, key), kind in fields:
        for value in ("nan", "inf", "-inf"):
            if kind == "scalar":
                text = f"[{section}]\n{key} = {value}\n"
            elif kind == "map":
                text = f"[{section}.{key}]\nproduct_viewed = {value}\n"
            else:
                text = f"[{section}.{key}.m]\nx = {value}\n"
            path = write("f.toml", text)
            with pytest.raises(InputError) as info:
                load_settings(path)
            assert f"[{section}] {key}" in str(info.value), (text, str(info.value))


def test_a_5000_deep_toml_is_refused_naming_the_file(write) -> None:
    path = write("deep.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert "deep.toml" in str(info.value) and "nest too deeply" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "".join(f"[[profile.traits]]\nname = 't{i}'\nagg = 'count'\n" for i in range(2000)),
            "[profile] traits has 2,000 entries; at most 200 are allowed",
        ),
        (
            "".join(
                f"[[tags.rules]]\nname = 'r{i}'\nwhen = 'frequency > {i}'\n" for i in range(201)
            ),
            "[tags] rules has 201 entries; at most 200 are allowed",
        ),
        (
            "[[tags.rules]]\nname = 'long'\nwhen = '" + "a or " * 20_000 + "a'\n",
            "[tags] rules #1 (long) when has 100,001 characters; at most 50,000 are allowed",
        ),
    ],
)
def test_too_many_definitions_are_refused_naming_the_key_and_the_limit(
    write, text: str, fragment: str
) -> None:
    path = write("many.toml", text)
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert fragment in str(info.value)


def test_limits_at_the_bounds_are_accepted(write) -> None:
    path = write(
        "edge.toml",
        "[store]\nthreads = 256\nmemory_limit = '64MB'\n[profile]\nhalf_life_days = 0.0416667\n"
        + "".join(f"[[profile.traits]]\nname = 't{i}'\nagg = 'count'\n" for i in range(200)),
    )
    settings = load_settings(path)
    assert settings.store.threads == 256
    assert len(settings.profile.traits) == 200


def test_a_name_past_64_characters_is_refused(write) -> None:
    path = write("n.toml", "[[tags.rules]]\nname = '" + "a" * 100 + "'\nwhen = 'frequency > 1'\n")
    with pytest.raises(
        InputError, match=r"\[tags\] rules #1 .* name has 100 characters; at most 64"
    ):
        load_settings(path)


def test_a_5000_digit_number_is_refused_naming_the_file(write) -> None:
    path = write("digits.toml", "[store]\nthreads = 1" + "0" * 5000 + "\n")
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert "digits.toml: a number is too long to read" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[" + ".".join(["a"] * 5000) + "]\nb = 1\n",
        "[profile]\nweights = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    ],
    ids=["table-header", "under-a-key"],
)
def test_a_5000_deep_value_is_one_line_naming_the_file(write, text: str) -> None:
    path = write("deep.toml", text)
    with pytest.raises(InputError) as info:
        load_settings(path)
    assert "deep.toml" in str(info.value) and len(str(info.value)) < 300


# -- the settings file itself: only a regular file is read (issue 12) --------------------------


def test_only_a_regular_file_of_sane_size_is_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # opening it would block until a writer came
    cases = {
        str(fifo): "config file " + str(fifo) + " is not a regular file",
        str(tmp_path): " is not a regular file",
        "n" * 5000 + ".toml": "File name too long",
        "a\x00b.toml": "cannot read config file a\\x00b.toml",
        "u\udcff.toml": "config file u\\udcff.toml does not exist",
    }
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (17 << 20) + b"\n")
    cases[str(big)] = "is larger than 16 MiB"
    for path, fragment in cases.items():
        with pytest.raises(InputError) as info:
            load_settings(path)
        message = str(info.value)
        assert fragment in message, message
        assert len(message) < 400 and "\n" not in message
        message.encode("utf-8")  # printable: no lone surrogate reaches the terminal
