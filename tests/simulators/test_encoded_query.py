"""The simulator's encoded-query parser: operators, AND/OR precedence, ordering, bad terms."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.servicenow.encoded_query import (
    Condition,
    EncodedQuery,
    Order,
    QueryError,
    parse,
    parse_condition,
)


def getter(record: dict[str, str]) -> Callable[[str], str]:
    return lambda name: record.get(name, "")


INCIDENT = {
    "number": "INC0010002",
    "state": "2",
    "priority": "10",
    "short_description": "VPN down for Sales",
    "category": "network",
    "assigned_to": "",
    "sys_updated_on": "2026-01-22 14:28:24",
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=2", True),
        ("state=3", False),
        ("state!=3", True),
        ("priority>9", True),  # numbers compare as numbers, not as text ("10" < "9")
        ("priority>=10", True),
        ("priority<10", False),
        ("priority<=10", True),
        ("sys_updated_on>2026-01-22 14:28:23", True),
        ("sys_updated_on>=2026-01-22 14:28:24", True),
        ("sys_updated_on<2026-01-22 14:28:24", False),
        ("stateIN1,2,3", True),
        ("stateIN6,7", False),
        ("stateNOT IN6,7", True),
        ("short_descriptionLIKEdown", True),
        ("short_descriptionNOT LIKEdown", False),
        ("short_descriptionSTARTSWITHVPN", True),
        ("short_descriptionENDSWITHSales", True),
        ("short_descriptionSTARTSWITHdown", False),
        ("assigned_toISEMPTY", True),
        ("categoryISEMPTY", False),
        ("categoryISNOTEMPTY", True),
        ("assigned_to>1", False),  # an empty value is never greater or smaller
        ("categoryANYTHING", True),
    ],
)
def test_operators(query: str, expected: bool) -> None:
    """Each documented operator tests the field as the platform does."""
    assert parse(query).matches(getter(INCIDENT)) is expected


def test_caret_is_and_and_caret_or_binds_tighter() -> None:
    """a^ORb^c reads (a OR b) AND c."""
    query = parse("state=1^ORstate=2^category=hardware")
    assert not query.matches(getter(INCIDENT))
    assert query.matches(getter({**INCIDENT, "category": "hardware"}))
    assert query.matches(getter({**INCIDENT, "state": "1", "category": "hardware"}))
    assert not query.matches(getter({**INCIDENT, "state": "3", "category": "hardware"}))


def test_keyset_condition_after_a_time_and_id() -> None:
    """The poller's restart condition means: later second, or same second and larger id."""
    query = parse("sys_updated_on>T1^ORsys_id>b^sys_updated_on>=T1")
    assert query.matches(getter({"sys_updated_on": "T2", "sys_id": "a"}))
    assert query.matches(getter({"sys_updated_on": "T1", "sys_id": "c"}))
    assert not query.matches(getter({"sys_updated_on": "T1", "sys_id": "b"}))
    assert not query.matches(getter({"sys_updated_on": "T0", "sys_id": "z"}))


def test_nq_ors_whole_queries() -> None:
    """^NQ starts a new query whose matches are added to the first one's."""
    query = parse("state=1^category=hardware^NQnumber=INC0010002")
    assert query.matches(getter(INCIDENT))
    assert len(query.parts) == 2


def test_orderby_and_orderbydesc() -> None:
    """ORDERBY and ORDERBYDESC combine, the first clause most significant, numbers numerically."""
    rows = [
        {"n": "a", "priority": "2", "number": "INC3"},
        {"n": "b", "priority": "10", "number": "INC1"},
        {"n": "c", "priority": "2", "number": "INC9"},
        {"n": "d", "priority": "", "number": "INC5"},
    ]
    query = parse("active=true^ORDERBYpriority^ORDERBYDESCnumber")
    assert query.order == (Order("priority"), Order("number", descending=True))
    ordered = query.sort(rows, lambda row, f: row.get(f, ""))
    assert [r["n"] for r in ordered] == ["d", "c", "a", "b"]


def test_bad_terms_are_ignored_not_fatal() -> None:
    """Like the platform by default, an unparseable part is ignored and the rest applies."""
    query = parse("state=2^this is not a condition^ORDERBY^EQ")
    assert query.ignored == ("this is not a condition", "ORDERBY")
    assert query.matches(getter(INCIDENT))
    with pytest.raises(QueryError):
        parse_condition("=novalue")


def test_without_drops_unknown_columns_but_keeps_the_rest() -> None:
    """Conditions on unknown columns are dropped; a part left empty matches everything."""
    query = parse("bogus=1^state=2^ORDERBYbogus").without({"bogus"})
    assert query.order == ()
    assert query.matches(getter(INCIDENT))
    assert parse("bogus=1").without({"bogus"}).matches(getter(INCIDENT))


def test_value_may_contain_operator_characters() -> None:
    """Only the first operator splits the term: the value keeps '=' and '>' signs."""
    condition = parse_condition("short_description=a=b>c")
    assert condition == Condition("short_description", "=", "a=b>c")


def test_dot_walked_field_names_parse() -> None:
    """caller_id.user_name is one field name (resolved by the store)."""
    assert parse_condition("caller_id.user_name=abel.tuter") == Condition(
        "caller_id.user_name", "=", "abel.tuter"
    )


def test_empty_query_matches_everything() -> None:
    """No sysparm_query means every record."""
    assert parse("") == EncodedQuery()
    assert parse("").matches(getter({}))


# ------------------------------------------------------------------------------- properties

FIELDS = ("state", "priority", "category", "short_description")
values = st.sampled_from(["", "1", "2", "10", "abc", "network", "VPN down", "z"])
records = st.fixed_dictionaries({f: values for f in FIELDS})
simple_ops = st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "LIKE", "STARTSWITH", "ISEMPTY"])
conditions = st.builds(
    Condition,
    field=st.sampled_from(FIELDS),
    op=simple_ops,
    value=st.sampled_from(["1", "2", "10", "abc", "network", "VPN"]),
).map(lambda c: Condition(c.field, c.op, "" if c.op == "ISEMPTY" else c.value))


@given(
    record=records,
    groups=st.lists(st.lists(conditions, min_size=1, max_size=3), min_size=1, max_size=3),
)
def test_and_of_or_groups_matches_the_boolean_formula(
    record: dict[str, str], groups: list[list[Condition]]
) -> None:
    """Any query of ^-joined ^OR-groups matches exactly when every group has a true condition."""
    text = "^".join("^OR".join(c.encode() for c in group) for group in groups)
    expected = all(any(c.matches(getter(record)) for c in group) for group in groups)
    assert parse(text).matches(getter(record)) is expected


@given(groups=st.lists(st.lists(conditions, min_size=1, max_size=3), min_size=1, max_size=3))
def test_encode_round_trips(groups: list[list[Condition]]) -> None:
    """Parsing an encoded query and writing it back gives the same text."""
    text = "^".join("^OR".join(c.encode() for c in group) for group in groups)
    text += "^ORDERBYpriority^ORDERBYDESCstate"
    assert parse(text).encode() == text


@given(rows=st.lists(records, max_size=30), field=st.sampled_from(FIELDS))
def test_orderbydesc_is_the_reverse_order_of_orderby(
    rows: list[dict[str, str]], field: str
) -> None:
    """Sorting descending gives ascending keys reversed, and sorting keeps every row."""
    asc = parse(f"ORDERBY{field}").sort(rows, lambda r, f: r[f])
    desc = parse(f"ORDERBYDESC{field}").sort(rows, lambda r, f: r[f])
    assert sorted(map(repr, asc)) == sorted(map(repr, rows))
    assert [r[field] for r in desc] == [r[field] for r in reversed(asc)]


@given(rows=st.lists(records, min_size=1, max_size=30), field=st.sampled_from(FIELDS))
def test_greater_than_agrees_with_orderby(rows: list[dict[str, str]], field: str) -> None:
    """Rows matching `field>pivot` are exactly the ones ORDERBY puts after the pivot's rows."""
    ordered = parse(f"ORDERBY{field}").sort(rows, lambda r, f: r[f])
    pivot = ordered[len(ordered) // 2][field]
    matches = [parse(f"{field}>{pivot}").matches(getter(r)) for r in ordered]
    first = matches.index(True) if True in matches else len(matches)
    assert all(matches[first:])
    if pivot:
        assert all(r[field] != pivot for r in ordered[first:])
        assert any(r[field] == pivot for r in ordered[:first])
