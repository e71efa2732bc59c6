"""Connector failures in `sync --once`, `backfill` and `explain`: one line each, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.app import build
from cli.failures import describe
from connectors.errors import (
    AuthFailed,
    ConnectorError,
    InvalidRequest,
    NotFound,
    ServerUnavailable,
    TransportFailed,
)
from sync.config.settings import Settings
from sync.systems.servicenow.settings import ServiceNowSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


class PollingEngine:
    """Stands in for the sync engine: each system's poll raises its error or finds records."""

    def __init__(self, outcomes: dict[str, ConnectorError | int]) -> None:
        self.outcomes = outcomes
        self.polled: list[str] = []

    def poll(self, system: str) -> int:
        self.polled.append(system)
        outcome = self.outcomes[system]
        if isinstance(outcome, ConnectorError):
            raise outcome
        return outcome

    def process(self, system: str, ticket_id: str) -> None:
        raise AssertionError(f"nothing was queued, yet {system} {ticket_id} was processed")

    def reconcile(self) -> int:
        raise AssertionError("sync --once does not reconcile")


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example configuration over a fresh state directory, with the secrets it needs."""
    for name in list(os.environ):
        if name.startswith("ESCALATION_SYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ESCALATION_SYNC_STATE__DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "token-never-shown")
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__PASSWORD", "password-never-shown")
    return tmp_path / "state"


def cli(*args: str) -> Result:
    return CliRunner().invoke(build(), [*args, "--config", str(EXAMPLE)])


def use_engine(monkeypatch: pytest.MonkeyPatch, engine: PollingEngine) -> None:
    monkeypatch.setattr("sync.runtime.wiring.build_engine", lambda *a, **k: engine)


def assert_clean(result: Result) -> None:
    assert "Traceback" not in result.output
    assert "never-shown" not in result.output


def test_sync_once_goes_on_with_the_other_system_when_one_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Jira unreachable: one stderr line names Jira and its address, ServiceNow is still polled."""
    engine = PollingEngine(
        {
            "jira": TransportFailed("GET /rest/api/2/search: ConnectionError", system="jira"),
            "servicenow": 2,
        }
    )
    use_engine(monkeypatch, engine)
    result = cli("sync", "--once")
    assert result.exit_code == 1
    assert_clean(result)
    assert engine.polled == ["jira", "servicenow"]
    assert result.stderr == (
        "jira not polled: Jira (http://127.0.0.1:8081) could not be reached: "
        "GET /rest/api/2/search: ConnectionError\n"
    )
    assert result.stdout.startswith("changed records: jira not polled, servicenow 2; tasks run: 0")


def test_sync_once_with_both_systems_down_reports_both(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both polls failing give two lines and exit 1."""
    use_engine(
        monkeypatch,
        PollingEngine(
            {
                "jira": ServerUnavailable("GET /rest/api/2/search: HTTP 503", system="jira"),
                "servicenow": AuthFailed("GET /api/now/table/incident: HTTP 401", system=""),
            }
        ),
    )
    result = cli("sync", "--once")
    assert result.exit_code == 1
    assert_clean(result)
    lines = result.stderr.splitlines()
    assert lines == [
        "jira not polled: Jira (http://127.0.0.1:8081) is unavailable; try again later: "
        "GET /rest/api/2/search: HTTP 503",
        "servicenow not polled: ServiceNow (http://127.0.0.1:8082) refused our credentials: "
        "GET /api/now/table/incident: HTTP 401",
    ]


def test_sync_once_without_half_a_credential_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Jira email with no API token exits 2 naming the variable to set, before any request."""
    monkeypatch.delenv("ESCALATION_SYNC_JIRA__API_TOKEN")
    result = cli("sync", "--once")
    assert result.exit_code == 2
    assert_clean(result)
    assert result.stderr == (
        "invalid configuration (1 error):\n"
        f"  {EXAMPLE}: jira.api_token: not set "
        "(set ESCALATION_SYNC_JIRA__API_TOKEN or api_token_file)\n"
    )


def test_backfill_stops_with_one_line_on_a_connector_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan that fails prints `backfill stopped:` and the reason, exit 1."""
    use_engine(monkeypatch, PollingEngine({}))

    def failing(*args: object, **kwargs: object) -> None:
        raise AuthFailed("GET /api/now/table/incident: HTTP 403", system="servicenow")

    monkeypatch.setattr("sync.pipeline.backfill.backfill", failing)
    result = cli("backfill", "--system", "servicenow")
    assert result.exit_code == 1
    assert_clean(result)
    assert result.stderr == (
        "backfill stopped: ServiceNow (http://127.0.0.1:8082) refused our credentials: "
        "GET /api/now/table/incident: HTTP 403\n"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            TransportFailed("GET /api/now/table/incident/INC1: could not connect", system=""),
            "cannot read INC1: ServiceNow (http://127.0.0.1:8082) could not be reached: "
            "GET /api/now/table/incident/INC1: could not connect",
        ),
        (
            NotFound("GET /api/now/table/incident/INC1: HTTP 404", system="servicenow"),
            "ServiceNow has no record INC1",
        ),
    ],
)
def test_explain_reports_a_read_failure_in_one_line(
    monkeypatch: pytest.MonkeyPatch, error: ConnectorError, expected: str
) -> None:
    """`explain REF` with ServiceNow down or the record missing: one line, exit 1."""

    def load(settings: object, ref: str) -> None:
        raise error

    monkeypatch.setattr("sync.runtime.refs.load_ticket_for_explain", load)
    result = cli("explain", "INC1")
    assert result.exit_code == 1
    assert_clean(result)
    assert result.stderr == expected + "\n"


def test_describe_drops_user_information_from_the_address() -> None:
    """An address written with user:password@ is shown without them."""

    section = ServiceNowSettings(instance_url="https://svc:secret@acme.service-now.com/")
    settings = Settings(systems={"servicenow": section})
    text = describe(InvalidRequest("POST x: HTTP 400", system="servicenow"), settings)
    assert text == "ServiceNow (https://acme.service-now.com) refused the request: POST x: HTTP 400"
