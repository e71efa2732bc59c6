"""Approval by a workflow step: the incident's `approval` field, set by the person deciding.

The mapping reads the escalation record from ServiceNow (state from `approval`, approver from
`sys_updated_by`) and the policy approves by transition. Only a named approver's change counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    AGENT,
    COMPLETE_DESCRIPTION,
    EXAMPLE_CONFIG,
    Harness,
    notes_with,
    step,
)

pytestmark = pytest.mark.e2e

ESCALATION_MAPPING = """
[mapping.systems.servicenow.escalation.state]
read = "approval"
[mapping.systems.servicenow.escalation.state.read_values]
"not requested" = "none"
requested = "pending_approval"
approved = "approved"
rejected = "rejected"
[mapping.systems.servicenow.escalation.approver]
read = "sys_updated_by"
transform = "servicenow_user"
"""


def _config(tmp_path: Path) -> Path:
    text = EXAMPLE_CONFIG.read_text()
    command_only = 'via = ["command"]'
    assert command_only in text
    config = tmp_path / "config.toml"
    config.write_text(
        text.replace(command_only, 'via = ["command", "transition"]', 1) + ESCALATION_MAPPING
    )
    return config


@pytest.fixture
def harness_options(tmp_path: Path) -> dict[str, Any]:
    """The example configuration approving by the `approval` field."""
    return {"escalation": True, "config": _config(tmp_path)}


def test_approval_field_set_by_an_approver_escalates_and_by_anyone_else_does_not(
    harness: Harness,
) -> None:
    """The agent's `approved` is refused; the SME's creates the linked, tagged Jira issue."""
    h = harness
    h.servicenow.add_user("sme.alice", name="Alice Sme", email="sme.alice@example.com")
    sys_id = h.incident(
        short_description="Checkout fails for EU customers",
        description=COMPLETE_DESCRIPTION,
        impact="2",
        urgency="2",
    )
    h.servicenow.attach(sys_id, "service.log", b"500 POST /pay\n" * 20, as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/escalate customer blocked on payments", as_user=AGENT)
    step(h, sys_id)
    assert notes_with(h, sys_id, "Awaiting approval (group sme).")

    h.servicenow.update_incident(sys_id, {"approval": "approved"}, as_user=AGENT)
    outcome = h.sync("servicenow", sys_id)
    h.drain()
    assert outcome.decision is not None
    [refused] = [r for r in outcome.decision.blocked if r.rule == "approval.transition"]
    assert AGENT in refused.detail and "not among the approvers" in refused.detail
    assert h.store.get_link("servicenow", sys_id) is None
    assert not notes_with(h, sys_id, "Escalation approved by")

    h.servicenow.update_incident(sys_id, {"approval": "requested"}, as_user=AGENT)
    h.servicenow.update_incident(sys_id, {"approval": "approved"}, as_user="sme.alice")
    step(h, sys_id)
    [approved] = notes_with(h, sys_id, "Escalation approved by sme.alice")
    assert "L1 -> L2" in approved
    link = h.store.get_link("servicenow", sys_id)
    assert link is not None and link.side("jira").ticket_id
    assert "ESCALATION" in h.jira.issue(link.side("jira").ticket_id)["fields"]["labels"]
    assert "ESCALATION" in h.servicenow.incident(sys_id)["u_labels"].split(",")

    step(h, sys_id)
    assert len(notes_with(h, sys_id, "Escalation approved by")) == 1
