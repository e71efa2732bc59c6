"""`escalation-sync doctor` against the simulators: all pass when set up right, and each way of
setting it up wrong fails exactly one line, the one that names it, with its fix."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.app import build
from simulators.estate import JIRA_API_TOKEN, SimulatedEstate
from sync.config.settings import EXAMPLE_CONFIG

DAEMON = "http://127.0.0.1:18080"


@dataclass
class Setup:
    """The simulators, the configuration text and the environment doctor runs with."""

    estate: SimulatedEstate
    config: str
    env: dict[str, str]

    def replace(self, old: str, new: str) -> None:
        assert old in self.config, old
        self.config = self.config.replace(old, new, 1)


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """The estate configured as the example expects, with an incident and an issue to read."""
    with SimulatedEstate() as estate:
        estate.point_webhooks_at(DAEMON)
        estate.servicenow.create_incident({"short_description": "Probe"}, as_user="lee.l1")
        estate.jira.create_issue("DS", "Probe")
        env = {
            **estate.environment(),
            "ESCALATION_SYNC_JIRA__BASE_URL": estate.jira.url,
            "ESCALATION_SYNC_SERVICENOW__INSTANCE_URL": estate.servicenow.url,
            "ESCALATION_SYNC_EMAIL__SMTP__PORT": str(estate.mail.smtp_port),
            "ESCALATION_SYNC_WEBHOOKS__PORT": "18080",
            "ESCALATION_SYNC_STATE__DIR": str(tmp_path / "state"),
        }
        for name in list(os.environ):
            if name.startswith("ESCALATION_SYNC_"):
                monkeypatch.delenv(name)
        yield Setup(estate, EXAMPLE_CONFIG.read_text(), env)


def doctor(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "config.toml"
    config.write_text(setup.config)
    return CliRunner().invoke(build(), ["doctor", "--config", str(config)])


def lines(result: Result, verdict: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(verdict + " ")]


def test_everything_set_up_right_passes(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check passes, one line each, exit 0; nothing was changed in either system."""
    incident = setup.estate.servicenow.incidents()[0]
    result = doctor(setup, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert lines(result, "FAIL") == [] and lines(result, "SKIP") == []
    checks = [line.split(":", 1)[0] for line in lines(result, "PASS")]
    assert checks == [
        "PASS jira credentials",
        "PASS jira project and issue type",
        "PASS jira fields",
        "PASS jira create screen",
        "PASS jira edit screen",
        "PASS jira workflow",
        "PASS jira internal-comment role",
        "PASS jira webhook",
        "PASS servicenow credentials",
        "PASS servicenow table",
        "PASS servicenow fields",
        "PASS servicenow choice values",
        "PASS servicenow write access",
        "PASS servicenow webhook",
        "PASS email smtp authentication",
    ]
    assert result.stdout.splitlines()[-1] == "15 passed, 0 failed"
    after = setup.estate.servicenow.incident(incident["sys_id"])
    assert after["sys_mod_count"] == incident["sys_mod_count"], "the write probe saved nothing"


def _jira_token(s: Setup) -> None:
    s.env["ESCALATION_SYNC_JIRA__API_TOKEN"] = JIRA_API_TOKEN + "-wrong"


def _jira_project(s: Setup) -> None:
    s.replace('target_project = "DS"', 'target_project = "NOPE"')
    s.replace('project = "DS"\nissue_type = "Bug"', 'project = "NOPE"\nissue_type = "Bug"')


def _issue_type(s: Setup) -> None:
    s.replace('issue_type = "Bug"\napprovers', 'issue_type = "Epic"\napprovers')


def _unknown_field(s: Setup) -> None:
    s.replace('write = "environment"', 'write = "customfield_99999"')


def _off_the_create_screen(s: Setup) -> None:
    s.estate.jira.place_field("DS", "environment", screens=("edit",))


def _off_the_edit_screen(s: Setup) -> None:
    s.estate.jira.place_field("DS", "environment", screens=("create",))


def _status_not_in_workflow(s: Setup) -> None:
    s.replace('on_hold = "Waiting"', 'on_hold = "Blocked"')


def _no_such_role(s: Setup) -> None:
    s.replace('internal_comment_role = "Administrators"', 'internal_comment_role = "Leads"')


def _role_not_held(s: Setup) -> None:
    s.estate.jira.remove_from_role("DS", "Administrators", s.estate.jira.integration.account_id)


def _jira_webhook_elsewhere(s: Setup) -> None:
    for hook in s.estate.jira.dispatcher.hooks():
        s.estate.jira.dispatcher.unregister(hook.id)
    s.estate.jira.register_webhook("https://old-sync.example.com/webhooks/jira", secret="x")


def _servicenow_password(s: Setup) -> None:
    s.env["ESCALATION_SYNC_SERVICENOW__PASSWORD"] = "wrong"


def _servicenow_table(s: Setup) -> None:
    s.replace('table = "incident"', 'table = "u_incident"')


def _missing_column(s: Setup) -> None:
    s.replace('read = "u_labels"', 'read = "u_tags"')
    s.replace('write = "u_labels"', 'write = "u_tags"')


def _not_a_choice(s: Setup) -> None:
    s.replace('fields = { hold_reason = "1" }', 'fields = { hold_reason = "9" }')


def _write_denied(s: Setup) -> None:
    s.estate.servicenow.restrict_field("incident", "u_labels", write_roles=("admin",))


def _rule_posts_elsewhere(s: Setup) -> None:
    s.estate.servicenow.set_property(
        "escalation_sync.webhook.url",
        "https://old-sync.example.com/webhooks/servicenow",
        read_roles="itil",
    )


def _smtp_down(s: Setup) -> None:
    s.env["ESCALATION_SYNC_EMAIL__SMTP__PORT"] = "1"


WRONG: list[tuple[str, Callable[[Setup], None], str, str]] = [
    ("jira token", _jira_token, "jira credentials", "ESCALATION_SYNC_JIRA__API_TOKEN"),
    ("jira project", _jira_project, "jira project and issue type", "no project NOPE"),
    ("issue type", _issue_type, "jira project and issue type", "no issue type Epic"),
    ("unknown field", _unknown_field, "jira fields", "customfield_99999"),
    ("create screen", _off_the_create_screen, "jira create screen", "environment"),
    ("edit screen", _off_the_edit_screen, "jira edit screen", "environment"),
    ("workflow", _status_not_in_workflow, "jira workflow", "no status Blocked"),
    ("role missing", _no_such_role, "jira internal-comment role", "no project role 'Leads'"),
    ("role not held", _role_not_held, "jira internal-comment role", "does not hold the role"),
    ("jira webhook", _jira_webhook_elsewhere, "jira webhook", "no webhook posts to"),
    ("sn password", _servicenow_password, "servicenow credentials", "SERVICENOW__PASSWORD"),
    ("sn table", _servicenow_table, "servicenow table", "no table 'u_incident'"),
    ("sn column", _missing_column, "servicenow fields", "no column u_tags"),
    ("sn choice", _not_a_choice, "servicenow choice values", "has no choice '9'"),
    (
        "sn write",
        _write_denied,
        "servicenow write access",
        "u_labels (Operation Failed; ACL Exception",
    ),
    ("sn webhook", _rule_posts_elsewhere, "servicenow webhook", "old-sync.example.com"),
    ("smtp", _smtp_down, "email smtp authentication", "SMTP connection"),
]


@pytest.mark.parametrize(
    ("wrong", "check", "words"),
    [pytest.param(w, c, words, id=name) for name, w, c, words in WRONG],
)
def test_each_wrong_setting_fails_one_line_with_its_fix(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wrong: Callable[[Setup], None],
    check: str,
    words: str,
) -> None:
    """One thing set up wrong: exactly its line fails, naming the problem and the fix; exit 1."""
    wrong(setup)
    result = doctor(setup, tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    (line,) = lines(result, "FAIL")
    assert line.startswith(f"FAIL {check}: ") and words in line, line
    assert "(fix: " in line
    assert "sim-api-token" not in result.output and "sim-sn-password" not in result.output


def _email(transport: str) -> object:
    from connectors.email import EmailSettings

    sections = {
        "graph": {"graph": {"tenant_id": "t", "client_id": "app-1", "client_secret": "s"}},
        "ews": {
            "ews": {
                "service_endpoint": "https://mail.example.com/EWS/Exchange.asmx",
                "username": "EXAMPLE\\support",
                "password": "p",
            }
        },
    }
    return EmailSettings.model_validate(
        {"transport": transport, "from_address": "support@example.com", **sections[transport]}
    )


@pytest.mark.parametrize("transport", ["graph", "ews"])
def test_graph_and_ews_authentication_failures_fail_their_line(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused Graph token or EWS login fails the email line with the transport's fix."""
    from exchangelib.errors import UnauthorizedError

    from connectors import email as transports
    from connectors.errors import AuthFailed
    from sync.doctor.email import check_email

    def refuse_token(*args: object) -> str:
        raise AuthFailed("token request refused: invalid_client: bad secret", system="email")

    def refuse_login(*args: object) -> str:
        raise UnauthorizedError("Invalid credentials for https://mail.example.com/EWS")

    monkeypatch.setattr(transports.MsalTokenProvider, "__call__", refuse_token)
    monkeypatch.setattr(transports.EwsSender, "_get_account", refuse_login)
    result = check_email(_email(transport))
    assert result.failed and result.name == f"{transport} authentication"
    words = {"graph": "invalid_client", "ews": "Exchange refused the credentials"}
    assert words[transport] in result.detail
    assert f"[email.{transport}]" in result.fix


def test_a_graph_token_passes_the_email_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An issued Graph token is a passing email line naming the application."""
    from connectors import email as transports
    from sync.doctor.email import check_email

    monkeypatch.setattr(transports.MsalTokenProvider, "__call__", lambda self: "token")
    result = check_email(_email("graph"))
    assert not result.failed and "app-1" in result.detail


def _with_slack(setup: Setup, token: str) -> None:
    setup.config += f'\n[notify.slack]\nbase_url = "{setup.estate.slack.api_url}"\n'
    setup.env["ESCALATION_SYNC_NOTIFY__SLACK__TOKEN"] = token


def test_the_slack_token_and_its_scopes_are_checked(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With [notify.slack], auth.test names the bot and its workspace, and the scopes Slack
    says the token has (X-OAuth-Scopes) cover what the channel does."""
    _with_slack(setup, setup.estate.slack.bot_token)
    result = doctor(setup, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    slack = [line for line in lines(result, "PASS") if line.startswith("PASS slack")]
    assert [line.split(":", 1)[0] for line in slack] == [
        "PASS slack token",
        "PASS slack token scopes",
    ]
    assert "escalation-sync" in slack[0]


def test_a_token_short_of_scopes_or_revoked_fails_its_line(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without channels:write fails the scopes line naming what is missing and what
    the token has; a revoked one fails the token line (the scopes are not checked)."""
    slack = setup.estate.slack
    limited = slack.add_token("xoxb-sim-limited", slack.bot, ("channels:read", "chat:write"))
    _with_slack(setup, limited)
    result = doctor(setup, tmp_path, monkeypatch)
    assert result.exit_code == 1
    [missing] = lines(result, "FAIL")
    assert missing.startswith("FAIL slack token scopes: missing channels:write, channels:history")
    assert "(the token has channels:read, chat:write)" in missing
    assert "reinstall it in the workspace" in missing
    slack.revoke_token(limited)
    result = doctor(setup, tmp_path, monkeypatch)
    [refused] = lines(result, "FAIL")
    assert refused.startswith("FAIL slack token: slack auth.test: token_revoked")
    assert lines(result, "SKIP") == ["SKIP slack token scopes: not checked: the token was refused"]
    assert limited not in result.output
