"""Policy validation: every error at once, each with file, dotted key path and reason."""

from __future__ import annotations

import copy

import pytest

from escalation.policy import load_policy
from mapping.errors import ConfigInvalid

LEVELS = [{"name": "L1"}, {"name": "L2", "approvers": {"users": ["alice"]}}]


def errors_of(data, **kw):
    with pytest.raises(ConfigInvalid) as info:
        load_policy(data, source="policy.toml", **kw)
    return {(e.file, e.key): e.reason for e in info.value.errors}


def test_minimal_policy_loads():
    """Two levels with an approver are enough; everything else has defaults."""
    policy = load_policy({"levels": LEVELS}, source="policy.toml")
    assert policy.on_approval.tag == "ESCALATION"
    assert policy.on_approval.set_priority is None and policy.on_approval.priority_bump == 0
    assert [v.value for v in policy.approval.command_in] == ["internal"]


def test_misspelt_key_is_named():
    """A typo'd key is reported by name with its path."""
    errs = errors_of({"levels": LEVELS, "limits": {"max_per_dya": 3}})
    assert errs == {("policy.toml", "limits.max_per_dya"): "unknown key 'max_per_dya' (misspelt?)"}


def test_all_errors_reported_together_with_escalation_prefix():
    """A file with an [escalation] table reports every problem with `escalation.` paths."""
    data = {
        "escalation": {
            "levels": LEVELS,
            "timezone": "Mars/Olympus",
            "limits": {"max_active": 0},
            "triggers": [{"kind": "sla", "field": "nope", "within_hours": 2}, {"kind": "weather"}],
            "gate": {"items": [{"check": "text", "name": "a", "pattern": "(unclosed"}]},
            "on_approval": {"set_priority": "P1", "priority_bump": 1},
        }
    }
    errs = errors_of(data)
    keys = {k for _, k in errs}
    assert keys == {
        "escalation.timezone",
        "escalation.limits.max_active",
        "escalation.triggers[0].field",
        "escalation.triggers[1]",
        "escalation.gate.items[0].pattern",
        "escalation.on_approval",
    }
    assert "unknown time zone" in errs[("policy.toml", "escalation.timezone")]
    assert (
        "does not start with a ticket field"
        in errs[("policy.toml", "escalation.triggers[0].field")]
    )


def test_prefix_for_the_main_configuration():
    """Loading the [escalation] section of the main config prefixes paths as given."""
    errs = errors_of({"levels": LEVELS, "bogus": 1}, prefix="escalation")
    assert ("policy.toml", "escalation.bogus") in errs


def test_cross_references_are_checked():
    """Unknown groups, gate items, approver-less levels and recipient-less notices are errors."""
    data = {
        "levels": [
            {"name": "L1"},
            {"name": "L2", "approvers": {"groups": ["ghosts"]}},
            {"name": "L3"},
        ],
        "priorities": {"P1": {"notify_management": True, "extra_gate_items": ["missing"]}},
    }
    errs = errors_of(data)
    assert errs[("policy.toml", "levels[1].approvers.groups[0]")] == "unknown group 'ghosts'"
    assert "names no approvers" in errs[("policy.toml", "levels[2].approvers")]
    assert (
        errs[("policy.toml", "priorities.P1.extra_gate_items[0]")] == "no gate item named 'missing'"
    )
    assert "nobody receives them" in errs[("policy.toml", "management.recipients")]


def test_new_cross_references_are_checked():
    """A gate item scoped to an unknown level, unknown priority approvers and a recipient-less
    management trigger are each reported at their key."""
    data = {
        "levels": LEVELS,
        "triggers": [{"kind": "priority", "priorities": ["P1"], "notify_management": True}],
        "gate": {"items": [{"check": "field", "name": "s", "field": "summary", "levels": ["L1"]}]},
        "priorities": {"P1": {"approvers": {"groups": ["managers"]}}},
    }
    errs = errors_of(data)
    assert "no level 'L1' to escalate to" in errs[("policy.toml", "gate.items[0].levels[0]")]
    assert errs[("policy.toml", "priorities.P1.approvers.groups[0]")] == "unknown group 'managers'"
    assert "nobody receives them" in errs[("policy.toml", "management.recipients")]


@pytest.mark.parametrize(
    ("patch", "key", "needle"),
    [
        ({"levels": [{"name": "L1"}]}, "levels", "at least two levels"),
        (
            {"levels": [{"name": "L1"}, {"name": "L1", "approvers": {"users": ["a"]}}]},
            "levels",
            "unique",
        ),
        (
            {
                "levels": [
                    {"name": "L1"},
                    {"name": "L2", "target_system": "jira", "approvers": {"users": ["a"]}},
                ]
            },
            "levels[1]",
            "project",
        ),
        ({"approval": {"via": ["field"]}}, "approval", "approval.field"),
        ({"approval": {"via": ["email"]}}, "approval.via[0]", "Input should be"),
        ({"request": {"command": "escalate"}}, "request.command", "slash"),
        (
            {"gate": {"items": [{"check": "contact", "name": "c", "pattern": None}]}},
            "gate.items[0]",
            "field, a pattern",
        ),
        (
            {
                "gate": {
                    "items": [
                        {"check": "field", "name": "x", "field": "summary"},
                        {"check": "field", "name": "x", "field": "summary"},
                    ]
                }
            },
            "gate.items",
            "unique",
        ),
        (
            {"triggers": [{"kind": "repeated", "count": 1, "window_hours": 1}]},
            "triggers[0].count",
            "greater than or equal to 2",
        ),
        ({"fingerprint": {"fields": ["custom_fields"]}}, "fingerprint.fields[0]", "needs a name"),
    ],
)
def test_each_schema_rule(patch, key, needle):
    """Each validation rule reports at the key it concerns."""
    data = copy.deepcopy({"levels": LEVELS})
    data.update(patch)
    errs = errors_of(data)
    assert ("policy.toml", key) in errs, errs
    assert needle in errs[("policy.toml", key)]


def test_new_keys_are_validated_with_file_key_and_reason():
    """Timers, stakeholders, routing, leadership and command words report every mistake."""
    data = {
        "escalation": {
            "levels": [
                {"name": "L1"},
                {
                    "name": "L2",
                    "approvers": {"users": ["alice"]},
                    "notify": ["board"],
                    "regions": {"EMEA": {"assignment_group": "EMEA L2"}},
                },
            ],
            "request": {"withdraw_command": "/escalate", "leadership_command": "/lead"},
            "timers": {
                "unassigned": {"after_hours": 0},
                "unconfirmed": {"remind_after_hours": 48, "close_after_hours": 24},
            },
            "stakeholders": {"notices": [{"events": ["escalated"], "to": ["sponsor", "C"]}]},
            "management": {"recipients": ["m@example.com"]},
        }
    }
    errs = errors_of(data)
    assert errs == {
        ("policy.toml", "escalation.timers.unassigned.after_hours"): (
            "Input should be greater than 0"
        ),
        ("policy.toml", "escalation.timers.unconfirmed"): (
            "close_after_hours must be later than remind_after_hours"
        ),
    }
    del data["escalation"]["timers"]
    errs = errors_of(data)
    assert errs == {
        ("policy.toml", "escalation.levels[1].notify[0]"): (
            "unknown audience 'board' (one of: management, sponsor, responsible, accountable, "
            "consulted, informed)"
        ),
        ("policy.toml", "escalation.stakeholders.notices[0].to[0]"): (
            "the sponsor is told but stakeholders.sponsor_field names no field"
        ),
        ("policy.toml", "escalation.stakeholders.notices[0].to[1]"): (
            "no stakeholder role is 'C' (RACI C)"
        ),
        ("policy.toml", "escalation.request.withdraw_command"): (
            "/escalate is already the command of request.command"
        ),
        ("policy.toml", "escalation.levels[1].regions"): (
            "per-region routing needs region_field (where the region is read)"
        ),
        ("policy.toml", "escalation.request.leadership_command"): (
            'there is no leadership level to ask for (levels[].kind = "leadership")'
        ),
    }


def test_leadership_levels_come_after_technical_ones():
    """A leadership level between technical ones, or first, is refused."""
    levels = [
        {"name": "L1"},
        {"name": "Lead", "kind": "leadership", "approvers": {"users": ["a"]}},
        {"name": "L2", "approvers": {"users": ["a"]}},
    ]
    errs = errors_of({"levels": levels})
    assert errs == {("policy.toml", "levels"): "leadership levels come after every technical level"}
