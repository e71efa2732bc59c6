"""`mapping check` and `mapping preview` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import build

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


SECRETS = {
    "ESCALATION_SYNC_JIRA__API_TOKEN": "token",
    "ESCALATION_SYNC_JIRA__WEBHOOK_SECRET": "jira-hook",
    "ESCALATION_SYNC_SERVICENOW__PASSWORD": "password",
    "ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET": "snow-hook",
}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the example configuration reads from the environment, as a service has them."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build(), list(args))
    return result.exit_code, result.output


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text, old
    path = tmp_path / "config.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_example_config_passes() -> None:
    """The shipped example configuration is valid and summarised on one line."""
    code, out = run("mapping", "check", "--config", str(EXAMPLE))
    assert code == 0, out
    assert out.startswith("OK ") and len(out.strip().splitlines()) == 1


def test_counts_agree_with_their_nouns(tmp_path: Path) -> None:
    """The example's single route reads `1 route`; a single error reads `(1 error)`."""
    code, out = run("mapping", "check", "--config", str(EXAMPLE))
    assert code == 0 and "; 1 route, policy" in out, out
    path = broken(tmp_path, 'target = "jira"\nwhen', 'target = "jiraa"\nwhen')
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2 and out.startswith("invalid configuration (1 error):"), out


def test_typo_key_is_named(tmp_path: Path) -> None:
    """A misspelt key is reported by name with its path, not ignored."""
    path = broken(tmp_path, 'write = "short_description"', 'wrtie = "short_description"')
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2
    assert "mapping.systems.servicenow.fields.summary.wrtie" in out and "'wrtie'" in out


def test_unknown_transform(tmp_path: Path) -> None:
    """An unknown transform is refused with the list of known ones."""
    path = broken(tmp_path, 'transform = "csv"', 'transform = "comma_list"')
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2
    assert "mapping.systems.servicenow.fields.labels.transform" in out
    assert "unknown transform 'comma_list'" in out


def test_incomplete_value_map(tmp_path: Path) -> None:
    """A value map missing a canonical value names the missing value."""
    path = broken(tmp_path, ', cancelled = "8" }', " }")
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2
    assert "mapping.systems.servicenow.fields.status.values" in out
    assert "missing canonical value 'cancelled'" in out


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    """Malformed TOML is refused with its line number."""
    path = broken(tmp_path, 'table = "incident"', 'table = "incident')
    line = next(
        i for i, t in enumerate(path.read_text().splitlines(), 1) if 'table = "incident' in t
    )
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2
    assert "malformed TOML" in out and f"line {line}" in out


def test_every_error_reported_at_once(tmp_path: Path) -> None:
    """Unknown field, bad path, ownership conflict and an unknown route system come out together."""
    text = EXAMPLE.read_text()
    text = text.replace(
        "[mapping.systems.servicenow.fields.category]",
        "[mapping.systems.servicenow.fields.kategory]",
    )
    text = text.replace('read = "fields.labels"', 'read = "fields.labels[?"')
    text = text.replace('target = "jira"\nwhen', 'target = "jiraa"\nwhen')
    text = text.replace(
        '[mapping.systems.jira.fields.summary]\nread = "fields.summary"\nwrite = "summary"',
        '[mapping.systems.jira.fields.summary]\nread = "fields.summary"\nwrite_mode = "none"',
    )
    text = text.replace("[mapping.ownership]\n", '[mapping.ownership]\nenvironment_x = "jira"\n')
    path = tmp_path / "config.toml"
    path.write_text(text)
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2
    assert "unknown canonical field 'kategory'" in out
    assert "mapping.systems.jira.fields.labels.read: bad path" in out
    assert "mapping.routes[0].target: route names unknown system 'jiraa'" in out
    assert "ownership of 'environment_x', which no system maps" in out
    assert "ownership conflict: servicenow owns 'summary' but jira cannot write it" in out
    assert out.count(str(path)) >= 5


def test_ownership_conflict_when_owner_side_cannot_be_written(tmp_path: Path) -> None:
    """A field owned by one side that the other side cannot write is an ownership conflict."""
    path = broken(
        tmp_path, 'summary = "servicenow"', 'category = "servicenow"\nsummary = "servicenow"'
    )
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 0, out  # category is only mapped on ServiceNow: nothing to conflict with
    path = broken(tmp_path, 'labels = "both"', 'labels = "both"\nimpact = "jira"')
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 2
    assert "ownership conflict: jira owns 'impact' but does not map it" in out


def test_preview_servicenow_sample_to_jira(vendor_dir: Path) -> None:
    """Preview prints the canonical ticket and the Jira payload, offline."""
    sample = vendor_dir / "servicenow" / "samples" / "PATCH_incident.response.json"
    code, out = run(
        "mapping", "preview", "--config", str(EXAMPLE), "--system", "servicenow", str(sample)
    )
    assert code == 0, out
    data = json.loads(out)
    assert data["canonical"]["priority"] == "P1"
    assert data["write_to"] == "jira"
    assert data["payload"]["fields"]["priority"] == {"name": "Highest"}
    assert data["payload"]["transition_to"] == "In Progress"


def test_preview_shows_only_what_the_sync_writes(vendor_dir: Path) -> None:
    """A Jira record's preview carries no field one side alone maps, and no blanked field."""
    capture = vendor_dir / "jira" / "webhooks" / "webhook-issue-created.json"
    code, out = run(
        "mapping", "preview", "--config", str(EXAMPLE), "--system", "jira", str(capture)
    )
    assert code == 0, out
    fields = json.loads(out)["payload"]["fields"]
    assert "category" not in fields  # only ServiceNow maps a category
    assert "" not in fields.values() and None not in fields.values()
    assert fields["state"] == "1"


def test_preview_rejects_non_json(tmp_path: Path) -> None:
    """A record that is not JSON exits 2 with a clear message."""
    bad = tmp_path / "r.json"
    bad.write_text("<html>")
    code, out = run("mapping", "preview", "--config", str(EXAMPLE), "--system", "jira", str(bad))
    assert code == 2 and "not a JSON record" in out


@pytest.mark.parametrize("module", ["run_sync"])
def test_run_sync_is_the_same_cli(module: str) -> None:
    """`python run_sync.py` exposes the same app as the console script."""
    import importlib

    assert importlib.import_module(module).main is __import__("cli.app").app.main


def test_missing_secrets_are_named_by_their_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, `mapping check` exits 2 for each missing credential, naming the variable (or
    the `_file` key) that sets it, and warns of a missing webhook secret."""
    monkeypatch.delenv("ESCALATION_SYNC_JIRA__API_TOKEN")
    monkeypatch.delenv("ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET")
    code, out = run("mapping", "check", "--config", str(EXAMPLE))
    assert code == 2
    assert out.splitlines() == [
        "invalid configuration (1 error):",
        f"  {EXAMPLE}: jira.api_token: not set "
        "(set ESCALATION_SYNC_JIRA__API_TOKEN or api_token_file)",
    ]
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "token")
    code, out = run("mapping", "check", "--config", str(EXAMPLE))
    assert code == 0
    assert (
        "warning: servicenow.webhook_secret: not set (set "
        "ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET or webhook_secret_file); ServiceNow webhooks "
        "will be refused (401) and changes found by polling only"
    ) in out


def test_a_secret_file_counts_as_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`password_file` gives the ServiceNow password as well as the variable does."""
    monkeypatch.delenv("ESCALATION_SYNC_SERVICENOW__PASSWORD")
    secret = tmp_path / "sn-password"
    secret.write_text("from-a-file\n")
    path = broken(
        tmp_path,
        'username = "escalation.sync"',
        f'username = "escalation.sync"\npassword_file = "{secret}"',
    )
    code, out = run("mapping", "check", "--config", str(path))
    assert code == 0, out


def test_run_without_a_secret_exits_2_with_the_variable_and_no_traceback(
    tmp_path: Path,
) -> None:
    """`run` with a missing secret stops with the same message and exit 2 (a systemd unit does
    not restart on it), no traceback, nothing secret printed."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATION_SYNC_")}
    env["ESCALATION_SYNC_SERVICENOW__PASSWORD"] = "never-shown"
    env["ESCALATION_SYNC_STATE__DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE.parent / "run_sync.py"), "run", "--config", str(EXAMPLE)],
        cwd=EXAMPLE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "never-shown" not in done.stderr
    assert "jira.api_token: not set (set ESCALATION_SYNC_JIRA__API_TOKEN or api_token_file)" in (
        done.stderr
    )
    assert not (tmp_path / "state").exists(), "nothing was started"
