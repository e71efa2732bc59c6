"""Jira Service Management comments keep their visibility through the product's own wiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mapping import to_canonical
from mapping.model import System, Visibility
from simulators.jira import JiraSimulator
from sync.config.settings import load_settings
from sync.runtime.wiring import build_adapters
from sync.systems.jira import SYSTEM as JIRA

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


@pytest.fixture
def jira() -> Iterator[JiraSimulator]:
    """A Jira simulator with its service-desk project SUP."""
    with JiraSimulator() as sim:
        yield sim


def _desk_issue(sim: JiraSimulator) -> str:
    key = sim.create_issue("SUP", "Printer on fire", issuetype="Incident")
    # As a JSM agent writes them: the property alone says internal, no visibility restriction.
    for body, internal in (("shared with the customer", False), ("agents only", True)):
        sim.state.add_comment(
            key,
            {
                "body": body,
                "properties": [{"key": "sd.public.comment", "value": {"internal": internal}}],
            },
            sim.engineer,
        )
    return key


@pytest.mark.parametrize("service_desk", [True, False])
def test_internal_desk_comment_reads_as_internal(
    jira: JiraSimulator, monkeypatch: pytest.MonkeyPatch, service_desk: bool
) -> None:
    """An agents-only JSM comment is internal whether or not `[jira] service_desk` is set."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__BASE_URL", jira.url)
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "sim-api-token")
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__SERVICE_DESK", str(service_desk).lower())
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__PASSWORD", "unused-here")
    settings = load_settings(EXAMPLE)
    assert settings.section(JIRA).service_desk is service_desk
    key = _desk_issue(jira)
    raw = build_adapters(settings)[System.JIRA].read(key)
    ticket = to_canonical(settings.mapping_model, System.JIRA, raw)
    seen = {c.body: c.visibility for c in ticket.comments}
    assert seen == {
        "shared with the customer": Visibility.PUBLIC,
        "agents only": Visibility.INTERNAL,
    }
