"""The ticket's escalation record read from vendor fields, for approval by a workflow step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mapping import load_mapping, to_canonical
from mapping.errors import ConfigInvalid
from mapping.model import EscalationState, Person, System
from sync.config.settings import read_toml

STATE = {
    "read": "approval",
    "read_values": {
        "not requested": "none",
        "requested": "pending_approval",
        "approved": "approved",
        "rejected": "rejected",
    },
}
APPROVER = {"read": "sys_updated_by", "transform": "servicenow_user"}


def _mapping_data(example_config: Path, escalation: dict[str, Any]) -> dict[str, Any]:
    data = read_toml(example_config)["mapping"]
    data["systems"]["servicenow"]["escalation"] = escalation
    return data


def _sample(vendor_dir: Path) -> dict[str, Any]:
    path = vendor_dir / "servicenow" / "samples" / "GET_incident_by_sysid.response.json"
    raw: dict[str, Any] = json.loads(path.read_text())["result"]
    return raw


def test_state_and_approver_are_read_into_the_escalation_record(
    example_config: Path, vendor_dir: Path
) -> None:
    """`approval = approved` set by sme.alice reads as an approved escalation decided by her."""
    mapping = load_mapping(
        _mapping_data(example_config, {"state": STATE, "approver": APPROVER}), source="m.toml"
    )
    raw = {**_sample(vendor_dir), "approval": "approved", "sys_updated_by": "sme.alice"}
    ticket = to_canonical(mapping, System.SERVICENOW, raw)
    assert ticket.escalation.state is EscalationState.APPROVED
    assert ticket.escalation.approver == Person(id="sme.alice")


def test_the_vendor_sample_reads_as_no_escalation(example_config: Path, vendor_dir: Path) -> None:
    """The documented incident's `not requested` maps to no escalation at all."""
    mapping = load_mapping(_mapping_data(example_config, {"state": STATE}), source="m.toml")
    ticket = to_canonical(mapping, System.SERVICENOW, _sample(vendor_dir))
    assert ticket.escalation.state is EscalationState.NONE
    assert ticket.escalation.approver is None


def test_unmapped_escalation_record_stays_empty(example_config: Path, vendor_dir: Path) -> None:
    """Without an escalation section the record is the empty default, whatever the fields say."""
    mapping = load_mapping(read_toml(example_config)["mapping"], source="m.toml")
    raw = {**_sample(vendor_dir), "approval": "approved"}
    assert to_canonical(mapping, System.SERVICENOW, raw).escalation.state is EscalationState.NONE


@pytest.mark.parametrize(
    ("escalation", "key", "reason"),
    [
        ({"stage": {"read": "approval"}}, "escalation.stage", "unknown part"),
        ({"state": {"read": "approval"}}, "escalation.state.read_values", "read_values"),
        ({"state": {**STATE, "write": "approval"}}, "escalation.state", "never written"),
        (
            {"state": {"read": "approval", "read_values": {"approved": "granted"}}},
            "escalation.state.read_values.approved",
            "not a escalation.state value",
        ),
    ],
)
def test_bad_escalation_sections_are_refused_by_key(
    example_config: Path, escalation: dict[str, Any], key: str, reason: str
) -> None:
    """An unknown part, a state without its value map, a write or an unknown state is named."""
    with pytest.raises(ConfigInvalid) as caught:
        load_mapping(_mapping_data(example_config, escalation), source="m.toml")
    found = {e.key: e.reason for e in caught.value.errors}
    full = f"systems.servicenow.{key}"
    assert any(k.endswith(full) for k in found), found
    assert any(reason in r for k, r in found.items() if k.endswith(full)), found
