"""End to end: `sync --once` and `backfill` from the command line against the simulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import build
from tests.e2e.conftest import AGENT, EXAMPLE_CONFIG, Harness

pytestmark = pytest.mark.e2e


@pytest.fixture
def always_config(tmp_path: Path) -> Path:
    """The example configuration with its route pairing every incident (not only escalations)."""
    text = EXAMPLE_CONFIG.read_text().replace('when = "escalation_approved"', 'when = "always"', 1)
    path = tmp_path / "always.toml"
    path.write_text(text)
    return path


@pytest.fixture
def harness_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    if "always_config" in request.fixturenames:
        return {"config": request.getfixturevalue("always_config")}
    return {}


def cli(*args: str, config: Path | None = None) -> Any:
    extra = ["--config", str(config)] if config is not None else []
    result = CliRunner().invoke(build(), [*args, *extra])
    return result


def test_sync_once_polls_and_applies_changes(harness: Harness) -> None:
    """With webhooks off, one `sync --once` run carries a Jira change and comment across."""
    sys_id, key = harness.pair(short_description="Cron sync")
    harness.servicenow.set_webhook(None)
    harness.jira.transition(key, "Done")
    harness.jira.comment(key, "Fixed in 4.3", public=True)
    result = cli("sync", "--once")
    assert result.exit_code == 0, result.output
    assert "new dead letters: 0" in result.output
    assert "Executing sync.queue.tasks" not in result.output, "Huey's per-task lines are kept quiet"
    assert harness.servicenow.incident(sys_id)["state"] == "6"
    assert "Fixed in 4.3" in harness.snow_journal_text(sys_id)


def test_backfill_pairs_existing_incidents_in_bulk(harness: Harness, always_config: Path) -> None:
    """Sixty existing incidents are paired through Jira bulk create (two chunks), once."""
    ids = [harness.incident(short_description=f"Legacy incident {i:02d}") for i in range(60)]
    harness.servicenow.add_comment(ids[0], "first comment", as_user=AGENT)
    result = cli("backfill", "--system", "servicenow", config=always_config)
    assert result.exit_code == 0, result.output
    assert "paired 60" in result.output
    bulk = harness.jira.stats()["requests"].get("POST /rest/api/2/issue/bulk", 0)
    assert bulk == 2
    links = harness.store.list_links()
    assert len(links) == 60
    first = harness.store.get_link("servicenow", ids[0])
    assert first is not None
    comments = harness.jira_comments(first.side("jira").ticket_id)
    assert [c["body"].split("\n")[0] for c in comments] == ["first comment"]
    again = cli("backfill", "--system", "servicenow", config=always_config)
    assert "paired 0" in again.output and "already paired 60" in again.output


@pytest.fixture
def jira_route_config(tmp_path: Path) -> Path:
    """The example configuration plus a route pairing every Jira issue with a new incident."""
    text = EXAMPLE_CONFIG.read_text() + (
        "\n[[mapping.routes]]\n"
        'name = "engineering-to-support"\n'
        'source = "jira"\n'
        'target = "servicenow"\n'
        'when = "always"\n'
        'target_table = "incident"\n'
    )
    path = tmp_path / "jira-route.toml"
    path.write_text(text)
    return path


def test_backfill_from_jira_uses_the_servicenow_batch_api(
    harness: Harness, jira_route_config: Path
) -> None:
    """Existing Jira issues are paired with incidents made through one Batch API call, and
    the incidents' link notes are written through another."""
    keys = [harness.jira.create_issue("DS", f"Engineering task {i}") for i in range(5)]
    harness.jira.comment(keys[0], "internal finding", public=False)
    result = cli("backfill", "--system", "jira", config=jira_route_config)
    assert result.exit_code == 0, result.output
    assert "paired 5" in result.output
    # Creates and link notes are batches, reads too (record, journal, attachments): count what
    # the batches carried.
    stats = harness.servicenow.stats()
    assert stats["batched"].get("POST /api/now/table/{table}") == 5
    assert "POST /api/now/table/{table}" not in stats["requests"]
    link = harness.store.get_link("jira", keys[0])
    assert link is not None
    incident = harness.servicenow.incident(link.side("servicenow").ticket_id)
    assert incident["short_description"] == "Engineering task 0"
    notes = [
        r
        for r in harness.snow_journal(link.side("servicenow").ticket_id)
        if "internal finding" in r["value"]
    ]
    assert [r["element"] for r in notes] == ["work_notes"]


def test_explain_reads_a_ticket_by_incident_number(harness: Harness) -> None:
    """`explain INC...` reads the incident through the engine's loader and prints a trace."""
    sys_id = harness.incident(short_description="Explain me please")
    number = harness.servicenow.incident(sys_id)["number"]
    result = cli("explain", number)
    assert result.exit_code == 0, result.output
    assert number in result.output or "state" in result.output


def test_explain_unknown_incident_says_so_in_one_line(harness: Harness) -> None:
    """`explain INC9999999` prints that ServiceNow has no such record and exits 1, no traceback."""
    result = cli("explain", "INC9999999")
    assert result.exit_code == 1
    assert result.stderr.strip() == "ServiceNow has no record INC9999999"
    assert result.stdout == ""


def test_explain_engineering_key_explains_the_paired_incident(harness: Harness) -> None:
    """`explain DS-n` of a pair explains the paired incident and says so first."""
    sys_id, key = harness.pair(short_description="Explain the pair")
    number = harness.servicenow.incident(sys_id)["number"]
    result = cli("explain", key)
    assert result.exit_code == 0, result.output
    first, _, rest = result.stdout.partition("\n")
    assert first == (
        f"{key} is the engineering side of a pair: explaining the paired ServiceNow record {number}"
    )
    assert f"servicenow {number} at " in rest


def test_explain_unpaired_engineering_key_is_refused(harness: Harness) -> None:
    """A Jira key that is not paired is not explained against the support policy."""
    key = harness.jira.create_issue("DS", "Engineering only")
    result = cli("explain", key)
    assert result.exit_code == 1
    assert f"{key} is a Jira record that is not paired with a ServiceNow record" in result.stderr
    assert "escalations are decided on ServiceNow records" in result.stderr


def test_sync_once_polls_jira_when_servicenow_refuses_the_credentials(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 from ServiceNow is one line naming the system; Jira is still polled; exit 1."""
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__PASSWORD", "wrong")
    result = cli("sync", "--once")
    assert result.exit_code == 1
    assert result.stderr.startswith("servicenow not polled: ServiceNow (http://127.0.0.1:")
    assert "refused our credentials" in result.stderr and "HTTP 401" in result.stderr
    assert "wrong" not in result.output
    assert "changed records: jira 0, servicenow not polled" in result.stdout
    assert harness.store.status_counts().watermarks["jira"].polled_at is not None


def test_backfill_says_which_records_had_no_route_and_why(harness: Harness, tmp_path: Path) -> None:
    """Unlabelled incidents under the escalation route, and incidents outside a route's filter,
    are listed by number with the reason no route took them."""
    numbers = sorted(
        harness.servicenow.incident(harness.incident(short_description=f"Old {i}"))["number"]
        for i in range(2)
    )
    result = cli("backfill", "--system", "servicenow")
    assert result.exit_code == 0, result.output
    assert "no route 2;" in result.stdout
    assert (
        "no route for 2 records: no ESCALATION label (route escalations-to-engineering pairs "
        f"escalated records only):\n  {numbers[0]}, {numbers[1]}\n"
    ) in result.stdout
    filtered = tmp_path / "filtered.toml"
    filtered.write_text(
        EXAMPLE_CONFIG.read_text().replace(
            'when = "escalation_approved"', 'when = "always"\nfilter = "priority == \'P1\'"', 1
        )
    )
    result = cli("backfill", "--system", "servicenow", config=filtered)
    assert result.exit_code == 0, result.output
    assert (
        "no route for 2 records: outside the filter of route escalations-to-engineering: "
        "priority == 'P1':"
    ) in result.stdout
