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
    comments = harness.jira_comments(first.jira_key)
    assert [c["body"].split("\n")[0] for c in comments] == ["first comment"]
    again = cli("backfill", "--system", "servicenow", config=always_config)
    assert "paired 0" in again.output and "already paired 60" in again.output
