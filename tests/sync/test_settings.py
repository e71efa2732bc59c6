"""Settings: file, environment overrides, secrets from files, all errors at once, nothing leaked."""

from __future__ import annotations

from pathlib import Path

import pytest

from mapping.errors import ConfigInvalid
from sync.config.settings import CONFIG_ENV, load_settings
from sync.systems.jira import SYSTEM as JIRA
from sync.systems.servicenow import SYSTEM as SERVICENOW

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ESCALATION_SYNC_* variable overrides the file's value, nested by double underscores."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__PROJECT", "OPS")
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "tok-123456")
    jira = load_settings(EXAMPLE).section(JIRA)
    assert jira.project == "OPS"
    assert jira.base_url == "http://127.0.0.1:8081"  # untouched keys keep file values
    assert jira.api_token is not None
    assert jira.api_token.get_secret_value() == "tok-123456"


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ESCALATION_SYNC_CONFIG names the file when --config is not given."""
    path = tmp_path / "c.toml"
    path.write_text(EXAMPLE.read_text().replace('project = "DS"', 'project = "ENV"', 1))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert load_settings(None).section(JIRA).project == "ENV"


def test_secret_from_file_is_never_printed(tmp_path: Path) -> None:
    """A secret read from a *_file is available to the code but masked in repr and str."""
    secret_file = tmp_path / "pw"
    secret_file.write_text("hunter2-very-secret\n")
    path = tmp_path / "c.toml"
    path.write_text(
        EXAMPLE.read_text().replace(
            'username = "escalation.sync"',
            f'username = "escalation.sync"\npassword_file = "{secret_file}"',
            1,
        )
    )
    settings = load_settings(path)
    servicenow = settings.section(SERVICENOW)
    assert servicenow.password is not None
    assert servicenow.password.get_secret_value() == "hunter2-very-secret"
    for text in (repr(settings), str(settings), repr(servicenow)):
        assert "hunter2" not in text


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A secret file that cannot be read is reported with its key, not a traceback."""
    path = tmp_path / "c.toml"
    path.write_text(
        EXAMPLE.read_text().replace(
            'username = "escalation.sync"',
            'username = "escalation.sync"\npassword_file = "/nonexistent/pw"',
            1,
        )
    )
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    assert any(e.key == "servicenow" and "password_file" in e.reason for e in info.value.errors)


def test_errors_from_every_section_come_together(tmp_path: Path) -> None:
    """A misspelt connection key, a mapping typo, a bad transform and a policy error: one report."""
    text = EXAMPLE.read_text()
    text = text.replace('project = "DS"', 'projekt = "DS"', 1)
    text = text.replace('transform = "csv"', 'transform = "nope"')
    text = text.replace('read = "short_description"', 'reed = "short_description"', 1)
    text = text.replace("max_per_day = 3", "max_per_day = 0")
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    reasons = {e.key: e.reason for e in info.value.errors}
    assert reasons["jira.projekt"].startswith("unknown key 'projekt'")
    assert reasons["mapping.systems.servicenow.fields.summary.reed"].startswith("unknown key")
    assert "mapping.systems.servicenow.fields.labels.transform" in reasons
    assert any(k.startswith("escalation.limits.max_per_day") for k in reasons)


def test_separate_mapping_file(tmp_path: Path) -> None:
    """`mapping_file` points at a standalone mapping, resolved relative to the config file."""
    import tomllib

    from sync.config.settings import read_toml

    data = read_toml(EXAMPLE)["mapping"]
    mapping_toml = tmp_path / "mapping.toml"
    # Round-trip the example's mapping section into its own file via the TOML text itself.
    text = EXAMPLE.read_text()
    start = text.index("[mapping]")
    body = (
        text[start:]
        .replace("[mapping.", "[")
        .replace("[[mapping.", "[[")
        .replace("[mapping]\n", "")
    )
    mapping_toml.write_text(body)
    assert tomllib.loads(body)["systems"].keys() == data["systems"].keys()
    config = tmp_path / "c.toml"
    # Top-level keys must precede the first table in TOML.
    config.write_text('mapping_file = "mapping.toml"\n' + text[:start])
    settings = load_settings(config)
    assert settings.mapping_model.source == str(mapping_toml)


def test_email_transport_secrets_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMTP password or Graph client secret from the environment stays out of repr and str."""
    monkeypatch.setenv("ESCALATION_SYNC_EMAIL__SMTP__PASSWORD", "smtp-pass-XYZ")
    settings = load_settings(EXAMPLE)
    assert settings.email_settings is not None
    assert settings.email_settings.smtp.password_value() == "smtp-pass-XYZ"
    for text in (repr(settings), str(settings), repr(settings.email_settings)):
        assert "smtp-pass-XYZ" not in text


@pytest.mark.parametrize(
    ("jql", "project", "expected"),
    [
        ("project = DS", "DS", {"DS"}),
        ('project in (ds, "ESC") AND status != Done', "DS", {"DS", "ESC"}),
        ("", "SW", {"SW"}),
        ("labels = escalated", "DS", None),
    ],
)
def test_the_projects_a_configuration_works_in(
    monkeypatch: pytest.MonkeyPatch, jql: str, project: str, expected: set[str] | None
) -> None:
    """The Jira projects a configuration works in come from its JQL, else its project, plus
    the routes' targets (a JQL naming no project bounds none); ServiceNow's is its table."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__JQL", jql)
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__PROJECT", project)
    settings = load_settings(EXAMPLE)
    scope = JIRA.scope(settings.section(JIRA), settings.mapping_model)
    if expected is None:
        assert scope is None
    else:
        assert scope is not None and scope.containers == frozenset(expected | {"DS"})
        assert scope.covers("ds") and not scope.covers("NOPE")
    table = SERVICENOW.scope(settings.section(SERVICENOW), settings.mapping_model)
    assert table is not None and table.containers == frozenset({"incident"})
