"""Which keys of a record a mapping reads, and plain paths read without JMESPath's interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jmespath
from hypothesis import given
from hypothesis import strategies as st
from jmespath.parser import ParsedResult

from mapping import Mapping, load_mapping, to_canonical
from mapping.convert import _search
from mapping.model import System
from mapping.reads import keys_read, paths_read
from sync.config.settings import read_toml

CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"
MAPPING: Mapping = load_mapping(read_toml(CONFIG)["mapping"], source=str(CONFIG))


def _with_read(system: str, field: str, expression: str) -> Mapping:
    data = read_toml(CONFIG)["mapping"]
    data["systems"][system]["fields"][field]["read"] = expression
    return load_mapping(data, source="test")


def test_servicenow_columns_are_the_ones_the_example_mapping_reads() -> None:
    """Reference, fields, the caller's id inside a projection, and the adapter's own keys."""
    assert keys_read(MAPPING, System.SERVICENOW) == {
        "sys_id", "number", "short_description", "description", "state", "priority", "impact",
        "urgency", "u_labels", "category", "assigned_to", "opened_by", "caller_id", "_caller",
        "sys_updated_on", "sys_mod_count", "sla_due", "u_escalation_type", "u_region",
        "u_sponsor", "_journal", "_attachments",
    }  # fmt: skip


def test_jira_fields_are_named_below_fields() -> None:
    """For Jira the issue fields are asked for, comments and attachments among them."""
    assert keys_read(MAPPING, System.JIRA, ("fields",)) == {
        "summary", "description", "status", "priority", "labels", "assignee", "reporter",
        "updated", "environment", "customfield_10050", "customfield_10051", "comment",
        "attachment",
    }  # fmt: skip
    assert keys_read(MAPPING, System.JIRA) == {"id", "key", "fields"}


def test_a_record_mapped_from_the_keys_read_is_the_same_ticket() -> None:
    """Dropping every key the mapping does not read changes nothing in the canonical ticket."""
    raw: dict[str, Any] = {
        "sys_id": "abc",
        "number": "INC0010001",
        "short_description": "VPN down",
        "state": "2",
        "priority": "3",
        "impact": "2",
        "urgency": "2",
        "caller_id": {"value": "u1", "link": "https://x/u1"},
        "_caller": {"name": "Carla", "email": "carla@example.com"},
        "sys_updated_on": "2026-11-23 10:00:00",
        "sys_mod_count": "4",
        "_journal": [{"sys_id": "j1", "value": "hello", "element": "comments"}],
        "close_notes": "not mapped",
        "sys_tags": "",
    }
    wanted = keys_read(MAPPING, System.SERVICENOW)
    assert wanted is not None
    narrow = {k: v for k, v in raw.items() if k in wanted}
    full = to_canonical(MAPPING, System.SERVICENOW, raw)
    assert to_canonical(MAPPING, System.SERVICENOW, narrow) == full


def test_an_expression_using_a_whole_subtree_asks_for_all_of_it() -> None:
    """`keys(fields)` needs every field: no list can be given."""
    mapping = _with_read("jira", "summary", "keys(fields) | [0]")
    assert keys_read(mapping, System.JIRA, ("fields",)) is None


def test_an_expression_not_understood_asks_for_everything() -> None:
    """A syntax node the walk does not know gives None, never a short list."""
    odd = ParsedResult("odd", {"type": "something_new", "value": None, "children": []})
    assert paths_read([jmespath.compile("a.b"), odd]) is None
    filtered = jmespath.compile("a[?x == `1`].b | [0]")
    assert paths_read([filtered]) == {("a", "b"), ("a", "x")}


keys = st.sampled_from(["a", "b", "c_1"])
values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)


@given(data=st.dictionaries(keys, values, max_size=4), path=st.lists(keys, min_size=1, max_size=3))
def test_plain_paths_read_what_jmespath_reads(data: dict[str, Any], path: list[str]) -> None:
    """Walking a dotted path through the dicts gives JMESPath's answer, missing keys included."""
    compiled = jmespath.compile(".".join(path))
    assert _search(compiled, data) == compiled.search(data)
