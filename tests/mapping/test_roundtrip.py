"""Property: canonical -> vendor write -> stored vendor record -> canonical is the identity."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping import Mapping, load_mapping, stored_as_written, to_canonical, to_vendor
from mapping.model import Priority, Ref, Status, System, Ticket
from simulators.servicenow.schema import PRIORITY_LOOKUP
from sync.config.settings import read_toml

CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"
MAPPING: Mapping = load_mapping(read_toml(CONFIG)["mapping"], source=str(CONFIG))

# ServiceNow's default priority lookup (impact x urgency), as the instance computes it.
SN_PRIORITY = PRIORITY_LOOKUP

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda s: s.strip() == s and s != "")
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)


def _store_jira(write: Any) -> dict[str, Any]:
    """How Jira stores an edit: fields as sent; the status reached by a transition."""
    fields = dict(write.fields)
    if write.transition_to:
        fields["status"] = {"name": write.transition_to}
    return {"id": "10001", "key": "DS-1", "fields": fields}


def _store_servicenow(write: Any) -> dict[str, Any]:
    """How ServiceNow stores a PATCH: strings as sent; priority computed from impact x urgency."""
    record: dict[str, Any] = {"sys_id": "abc", "number": "INC0010001", **write.fields}
    if "impact" in record:
        record["priority"] = SN_PRIORITY[(record["impact"], record["urgency"])]
    return record


STORE = {System.JIRA: _store_jira, System.SERVICENOW: _store_servicenow}
WRITABLE = {
    System.JIRA: ["summary", "description", "status", "priority", "labels", "custom.environment"],
    System.SERVICENOW: ["summary", "description", "status", "priority", "labels", "category"],
}


@st.composite
def tickets(draw: st.DrawFn, system: System) -> Ticket:
    values: dict[str, Any] = {
        "summary": draw(text),
        "description": draw(st.one_of(st.none(), text)),
        "status": draw(st.sampled_from(list(Status))),
        "priority": draw(st.sampled_from(list(Priority))),
        "labels": tuple(draw(st.lists(label, max_size=4, unique=True))),
    }
    custom = {}
    if system is System.JIRA:
        custom["environment"] = draw(st.one_of(st.none(), text))
    else:
        values["category"] = draw(st.one_of(st.none(), label))
        # ServiceNow stores labels as one comma-separated string.
        values["labels"] = tuple(x for x in values["labels"] if "," not in x)
    return Ticket(ref=Ref(system=system, id="x"), custom_fields=custom, **values)


def _mapped(ticket: Ticket, fields: list[str]) -> dict[str, Any]:
    data = ticket.model_dump()
    out = {}
    for name in fields:
        if name.startswith("custom."):
            out[name] = ticket.custom_fields.get(name.removeprefix("custom."))
        else:
            out[name] = data[name]
    return out


@pytest.mark.parametrize("system", [System.JIRA, System.SERVICENOW])
def test_round_trip_is_identity(system: System) -> None:
    """Writing a ticket to a system and reading the stored record back gives the same values."""

    @settings(max_examples=150, deadline=None)
    @given(tickets(system))
    def check(ticket: Ticket) -> None:
        fields = WRITABLE[system]
        write = to_vendor(MAPPING, system, ticket, fields)
        back = to_canonical(MAPPING, system, STORE[system](write))
        assert _mapped(back, fields) == _mapped(ticket, fields)

    check()


@given(st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0)))
def test_datetime_transforms_round_trip(moment: Any) -> None:
    """ServiceNow and Jira datetime transforms read back what they write (second precision)."""
    from mapping.transforms import TRANSFORMS

    for name in ("servicenow_datetime", "jira_datetime"):
        transform = TRANSFORMS[name]
        assert transform.read(transform.write(moment)) == moment


@pytest.mark.parametrize(
    ("system", "field", "verbatim"),
    [
        (System.JIRA, "priority", True),  # {"name": ...} is stored and read by name
        (System.JIRA, "summary", True),
        (System.JIRA, "labels", True),
        (System.JIRA, "status", False),  # reached through the workflow's transitions
        (System.JIRA, "assignee", False),  # read-only
        (System.SERVICENOW, "priority", False),  # computed from impact and urgency
        (System.SERVICENOW, "labels", True),
        (System.SERVICENOW, "status", True),
        (System.SERVICENOW, "customer", False),  # read through an expression
    ],
)
def test_stored_as_written(system: System, field: str, verbatim: bool) -> None:
    """Only plain writes of verbatim transforms, read where they are written, skip read-back."""
    assert stored_as_written(MAPPING, system, field) is verbatim
