"""Builders for escalation tests: a complete ticket, comments, and a DS-style base policy.

Imported by the tests as `escalation_builders` (this folder is on sys.path under pytest).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from escalation.policy import Policy, load_policy
from mapping.model import (
    Attachment,
    Comment,
    Person,
    Priority,
    Ref,
    System,
    Ticket,
    Visibility,
)

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)

ALICE = Person(id="alice", name="Alice Approver", email="alice@example.com")
SAM = Person(id="sam", name="Sam SME", email="sam@example.com")
ENGINEER = Person(id="eng1", name="Erin Engineer", email="erin@example.com")
CUSTOMER = Person(id="cust1", name="Carl Customer", email="carl@customer.example")
INTEGRATION = Person(id="integration", name="Sync", email="sync@example.com")

BASE_POLICY: dict[str, Any] = {
    "name": "test",
    "groups": {"sme": ["sam@example.com"]},
    "request": {"labels": ["escalate"], "command": "/escalate"},
    "gate": {
        "items": [
            {
                "check": "field",
                "name": "summary",
                "description": "Clear issue summary",
                "field": "summary",
                "min_length": 10,
            },
            {
                "check": "text",
                "name": "steps",
                "description": "Steps to reproduce",
                "pattern": "(?i)steps to reproduce",
            },
            {"check": "attachment", "name": "logs", "description": "Logs or screenshots"},
            {
                "check": "text",
                "name": "environment",
                "description": "Environment and version",
                "pattern": "(?i)version",
            },
            {
                "check": "text",
                "name": "troubleshooting",
                "description": "Troubleshooting done",
                "pattern": "(?i)troubleshooting",
            },
            {"check": "contact", "name": "contact", "description": "A named contact"},
        ]
    },
    "approval": {"via": ["command"]},
    "limits": {"max_per_day": 3, "max_active": 5, "max_active_per_assignee": 1},
    "levels": [
        {"name": "L1"},
        {
            "name": "L2",
            "target_system": "jira",
            "project": "ENG",
            "issue_type": "Bug",
            "approvers": {"users": ["alice"], "groups": ["sme"]},
        },
        {
            "name": "L3",
            "target_system": "jira",
            "project": "CORE",
            "approvers": {"users": ["alice"]},
        },
    ],
    "management": {"recipients": ["managers@example.com"]},
}

COMPLETE_DESCRIPTION = (
    "Payments API returns 500.\n"
    "Steps to reproduce: call /pay twice.\n"
    "Environment: prod, version 4.2.1\n"
    "Troubleshooting: restarted workers, cleared cache.\n"
    "Contact: Dana Ops"
)


@pytest.fixture
def now() -> datetime:
    """A fixed decision time."""
    return NOW


@pytest.fixture
def policy_data() -> dict[str, Any]:
    """A fresh copy of the base policy table, for tests to tweak."""
    return copy.deepcopy(BASE_POLICY)


@pytest.fixture
def make_policy(policy_data: dict[str, Any]) -> Callable[..., Policy]:
    """Build a policy from the base with dotted-key overrides: make_policy(**{"limits.x": 1})."""

    def build(**overrides: Any) -> Policy:
        data = copy.deepcopy(policy_data)
        for dotted, value in overrides.items():
            node = data
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return load_policy(data, source="test.toml")

    return build


@pytest.fixture
def policy(make_policy: Callable[..., Policy]) -> Policy:
    """The base policy."""
    return make_policy()


def _comment(
    cid: str,
    body: str,
    author: Person | None = ENGINEER,
    visibility: Visibility = Visibility.INTERNAL,
    minutes: int = 0,
) -> Comment:
    """A comment written `minutes` after 09:00 on the test day."""
    return Comment(
        id=cid,
        body=body,
        visibility=visibility,
        author=author,
        created=NOW - timedelta(hours=1) + timedelta(minutes=minutes),
    )


@pytest.fixture
def make_comment() -> Callable[..., Comment]:
    """The comment builder."""
    return _comment


@pytest.fixture
def make_ticket() -> Callable[..., Ticket]:
    """A complete ServiceNow incident; keyword arguments replace fields."""

    def build(n: int = 1, **fields: Any) -> Ticket:
        base: dict[str, Any] = {
            "ref": Ref(
                system=System.SERVICENOW,
                id=f"sys{n}",
                key=f"INC{n:07d}",
                url=f"https://sn.example/incident/{n}",
            ),
            "summary": f"Payments API returns HTTP 500 on retry ({n})",
            "description": COMPLETE_DESCRIPTION,
            "priority": Priority.P3,
            "assignee": Person(id=f"agent{n}", name=f"Agent {n}"),
            "customer": CUSTOMER,
            "category": "software",
            "labels": ("escalate",),
            "attachments": (Attachment(id="a1", filename="server.log"),),
        }
        base.update(fields)
        return Ticket(**base)

    return build


class People:
    """The cast of the tests."""

    alice = ALICE
    sam = SAM
    engineer = ENGINEER
    customer = CUSTOMER
    integration = INTEGRATION


@pytest.fixture
def people() -> type[People]:
    """Named people: alice (approver by id), sam (SME group by email), engineer, customer."""
    return People
