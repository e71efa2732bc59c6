"""A policy checked against the mapping: rules reading a field the ITSM record never carries."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

import presets
from escalation.policy import load_policy, mapping_gaps, policy_reads
from mapping import load_mapping
from mapping.errors import ConfigInvalid
from sync.config.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
EXAMPLE_MAPPING: dict[str, Any] = tomllib.loads(EXAMPLE.read_text())["mapping"]


def example_mapping(drop: tuple[str, ...] = (), **routes: Any) -> Any:
    """The example mapping without the ServiceNow entries named in `drop` (`custom.sla_due`)."""
    data = copy.deepcopy(EXAMPLE_MAPPING)
    snow = data["systems"]["servicenow"]
    for entry in drop:
        section, _, name = entry.partition(".")
        if name:
            del snow[section][name]
            data["ownership"].pop(name, None)
        else:
            del snow[section]
    if routes:
        data["routes"] = [{"name": "r", **routes}]
    return load_mapping(data, source="map.toml", prefix="mapping")


def sop_policy(**overrides: Any) -> Any:
    """A small policy reading the SLA due date, the category and the priority."""
    data: dict[str, Any] = {
        "escalation": {
            "triggers": [
                {"kind": "sla", "field": "custom_fields.sla_due", "within_hours": 4},
                {"kind": "category", "categories": ["security"]},
            ],
            "levels": [
                {"name": "L1"},
                {
                    "name": "L2",
                    "target_system": "jira",
                    "project": "SW",
                    "approvers": {"users": ["a"]},
                },
            ],
            **overrides,
        }
    }
    return load_policy(data, source="policy.toml")


def test_unmapped_custom_field_is_reported_with_file_key_and_reason():
    """An SLA trigger on a custom field the ITSM mapping lacks is one error naming the fix."""
    [error] = mapping_gaps(
        sop_policy(),
        example_mapping(("custom.sla_due",)),
        source="policy.toml",
        prefix="escalation",
    )
    assert error.file == "policy.toml"
    assert error.key == "escalation.triggers[0].field"
    assert "custom field 'sla_due'" in error.reason
    assert "[mapping.systems.servicenow.custom.sla_due] is missing" in error.reason
    assert "can never fire" in error.reason


def test_mapped_fields_give_no_error():
    """With the example mapping every field the small policy reads is there."""
    assert mapping_gaps(sop_policy(), example_mapping(), source="p.toml") == []


def test_implicit_reads_are_checked_too():
    """Low-impact categories, a category trigger and attachment gate items need their fields."""
    policy = sop_policy(
        limits={"low_impact": {"categories": ["inquiry"]}},
        gate={"items": [{"check": "attachment", "name": "logs"}]},
    )
    mapping = example_mapping(("fields.category", "attachments"))
    keys = {e.key: e.reason for e in mapping_gaps(policy, mapping, source="p.toml")}
    assert set(keys) == {"triggers[1].categories", "limits.low_impact.categories", "gate.items[0]"}
    assert "[mapping.systems.servicenow.attachments] is missing" in keys["gate.items[0]"]


def test_the_itsm_system_is_the_routes_source():
    """When routes start at Jira the policy is checked against Jira's mapping, not ServiceNow's."""
    mapping = example_mapping(source="jira", target="servicenow")
    keys = [e.key for e in mapping_gaps(sop_policy(), mapping, source="p.toml")]
    # Jira's example mapping has neither an SLA due date nor a category.
    assert keys == ["triggers[0].field", "triggers[1].categories"]


def test_every_field_path_of_a_preset_is_listed_as_a_read():
    """The technical-support preset's SLA field and the FastTrack type field are seen as reads."""
    sop = dict(policy_reads(presets.load_preset("technical_support_sop")))
    assert "custom.sla_due" in sop.values()
    fasttrack = dict(policy_reads(presets.load_preset("fasttrack_customer_escalation")))
    assert fasttrack[("request", "fields", 0, "field")] == "custom.escalation_type"


@pytest.mark.parametrize("name", presets.preset_names())
def test_each_preset_reads_only_what_the_example_mapping_maps(name: str):
    """Every rule of every preset can fire with the example configuration's mapping."""
    assert mapping_gaps(presets.load_preset(name), example_mapping(), source=name) == []


def test_load_settings_reports_the_gap_in_the_policy_file(tmp_path: Path):
    """`mapping check` (load_settings) refuses a policy_file rule reading an unmapped field."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[escalation]\n"
        "[[escalation.triggers]]\n"
        'kind = "sla"\nfield = "custom_fields.due_by"\nwithin_hours = 2\n'
        "[[escalation.levels]]\nname = 'L1'\n"
        "[[escalation.levels]]\nname = 'L2'\ntarget_system = 'jira'\nproject = 'DS'\n"
        "approvers = { users = ['sme'] }\n"
    )
    config = tmp_path / "config.toml"
    config.write_text(f'policy_file = "{policy}"\n' + EXAMPLE.read_text())
    with pytest.raises(ConfigInvalid) as caught:
        load_settings(config)
    [error] = caught.value.errors
    assert (error.file, error.key) == (str(policy), "escalation.triggers[0].field")
    assert "custom field 'due_by'" in error.reason


def test_load_settings_reports_the_gap_in_the_escalation_section(tmp_path: Path):
    """The inline [escalation] section is checked the same way, keys under `escalation.`."""
    text = EXAMPLE.read_text().replace(
        '[escalation.request]\nlabels = ["escalation-requested"]',
        '[escalation.request]\nlabels = ["escalation-requested"]\n'
        'fields = [{ field = "custom_fields.escalate_now" }]',
    )
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigInvalid) as caught:
        load_settings(config)
    [error] = caught.value.errors
    assert (error.file, error.key) == (str(config), "escalation.request.fields[0].field")


def test_transition_approval_needs_the_escalation_state_mapped():
    """Approval by a workflow step reads the escalation record's state; mapped, it passes."""
    policy = sop_policy(approval={"via": ["transition"]})
    [error] = mapping_gaps(policy, example_mapping(), source="p.toml")
    assert error.key == "approval.via"
    assert "the escalation record's state" in error.reason
    assert "[mapping.systems.servicenow.escalation.state] is missing" in error.reason
    data = copy.deepcopy(EXAMPLE_MAPPING)
    data["systems"]["servicenow"]["escalation"] = {
        "state": {"read": "approval", "read_values": {"approved": "approved"}}
    }
    mapped = load_mapping(data, source="map.toml", prefix="mapping")
    assert mapping_gaps(policy, mapped, source="p.toml") == []
