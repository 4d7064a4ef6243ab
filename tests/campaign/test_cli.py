"""``jingzhun campaign create|list|show|preview|send|report|export`` as a user runs them: real
processes on a store on disk, a real SMTP server on 127.0.0.1, one error line for bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.campaign.conftest import BASE_URL, Smtp, free_port
from tests.cli.subprocess_cli import error_line


def setup(campaign_template: Path, tmp_path: Path, port: int) -> tuple[Path, Path]:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(campaign_template, db)
    config = tmp_path / "jingzhun.toml"
    config.write_text(
        f'[email]\nport = {port}\nfrom = "news@shop.example"\nrate_per_second = 100000\n'
        f'[tracking]\nbase_url = "{BASE_URL}"\n',
        encoding="utf-8",
    )
    return db, config


def test_create_preview_send_report_as_a_user_runs_them(
    cli: Callable,
    campaign_template: Path,
    tmp_path: Path,
    smtp: Smtp,
    spec_file: Callable[..., Path],
) -> None:
    db, config = setup(campaign_template, tmp_path, smtp.port)
    spec = spec_file()
    run = lambda *a: cli("--db", str(db), "--config", str(config), "campaign", *a)  # noqa: E731
    made = run("create", str(spec), "--json")
    assert made.code == 0, made.stderr
    assert json.loads(made.stdout)["state"] == "draft"
    error_line(run("create", str(spec)), "campaign 'spring' exists (draft)", "--replace")
    preview = run("preview", "spring", "--sample", "1", "--json")
    body = json.loads(preview.stdout)
    assert body["audience"]["members"] > 0 and len(body["samples"]) == 1
    human = run("preview", "spring", "--sample", "1")
    assert "Exclusions, in order" in human.stdout and "Subject:" in human.stdout
    dry = json.loads(run("send", "spring", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["counts"]["queued"] == body["audience"]["treatment"]
    assert smtp.sink.messages == []
    sent = run("send", "spring", "--json")
    assert sent.code == 0, sent.stderr
    counts = json.loads(sent.stdout)["counts"]
    assert counts["sent"] == len(smtp.sink.messages) == body["audience"]["treatment"]
    listed = json.loads(run("list", "--json").stdout)["campaigns"]
    assert listed[0]["name"] == "spring" and listed[0]["sent"] == counts["sent"]
    report = json.loads(run("report", "spring", "--json").stdout)
    assert report["funnel"]["sent"] == counts["sent"] and "conversion_cuped" in report
    assert "Treatment against control" in run("report", "spring").stdout


def test_bad_input_is_one_error_line(
    cli: Callable, campaign_template: Path, tmp_path: Path, spec_file: Callable[..., Path]
) -> None:
    db, config = setup(campaign_template, tmp_path, free_port())
    run = lambda *a: cli("--db", str(db), "--config", str(config), "campaign", *a)  # noqa: E731
    bad = spec_file(name="bad", control="share = 1")
    error_line(run("create", str(bad)), "bad.toml: [control] share must be below 1")
    where = spec_file(name="typo", audience='where = "frequncy > 1"')
    error_line(run("create", str(where)), "[audience] where", "did you mean 'frequency'?")
    assert run("create", str(spec_file())).code == 0
    # the SMTP port has no server: one line naming [email], nothing written
    down = run("send", "spring")
    error_line(down, "[email] cannot reach the SMTP server 127.0.0.1", code=1)
    assert json.loads(run("show", "spring", "--json").stdout)["state"] == "draft"
    error_line(run("show", "nope"), "no campaign 'nope'")
    error_line(run("preview", "spring", "--lang", "fr"), "--lang 'fr'", "use en or zh")
    error_line(run("report", "spring"), "has not been sent")
    error_line(
        run("export", "spring", "--platform", "google", "--out", str(tmp_path / "a.csv")),
        "only ads campaigns are exported",
    )
