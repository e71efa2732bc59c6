"""ServiceNow encoded queries (`sysparm_query`): parse, match and order.

Grammar, as the platform reads it:

    query    := part ("^NQ" part)*                 NQ: a new query, OR-ed with the others
    part     := term ("^" term)*                   terms are AND-ed...
    term     := cond ("^OR" cond)* | ORDERBY<f> | ORDERBYDESC<f> | EQ
                                                   ...and ^OR binds tighter: a^ORb^c = (a|b)&c
    cond     := <field><op><value>                 field may dot-walk (caller_id.user_name)

Operators: = != > >= < <= IN NOT IN LIKE NOT LIKE STARTSWITH ENDSWITH ISEMPTY ISNOTEMPTY ANYTHING.
Values are compared as numbers when both sides are integers, otherwise as strings (datetimes on
the wire are `YYYY-MM-DD HH:MM:SS`, which order correctly as strings). Like the platform by
default, a term that cannot be parsed is ignored rather than failing the request (`ignored`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

Getter = Callable[[str], str]
R = TypeVar("R")

# Longest operators first so that ">=" is not read as ">" followed by a value "=...".
OPERATORS = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "ANYTHING",
    "NOT LIKE",
    "NOT IN",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
)
_UNARY = frozenset({"ISEMPTY", "ISNOTEMPTY", "ANYTHING"})
_COND = re.compile(
    r"^(?P<field>[a-z0-9_]+(?:\.[a-z0-9_]+)*?)(?P<op>"
    + "|".join(re.escape(op) for op in OPERATORS)
    + r")(?P<value>.*)$",
    re.DOTALL,
)
_FIELD = re.compile(r"^[a-z0-9_]+(?:\.[a-z0-9_]+)*$")


class QueryError(ValueError):
    """A query part that is not valid encoded-query syntax."""


def _order_key(value: str) -> tuple[int, int, str]:
    """Empty first, then integers by value, then other strings."""
    if value == "":
        return (0, 0, "")
    if value.isdigit() or (value[:1] == "-" and value[1:].isdigit()):
        return (1, int(value), "")
    return (2, 0, value)


def _compare(left: str, right: str) -> int:
    """-1, 0 or 1 comparing a field value to a query value, in the same order ORDERBY sorts."""
    a, b = _order_key(left), _order_key(right)
    return (a > b) - (a < b)


@dataclass(frozen=True, slots=True)
class Condition:
    """One `<field><op><value>` test."""

    field: str
    op: str
    value: str = ""

    def matches(self, get: Getter) -> bool:
        """Whether the record behind `get` satisfies this condition."""
        actual = get(self.field)
        op = self.op
        if op == "=":
            return _compare(actual, self.value) == 0
        if op == "!=":
            return _compare(actual, self.value) != 0
        if op == ">":
            return actual != "" and _compare(actual, self.value) > 0
        if op == ">=":
            return actual != "" and _compare(actual, self.value) >= 0
        if op == "<":
            return actual != "" and _compare(actual, self.value) < 0
        if op == "<=":
            return actual != "" and _compare(actual, self.value) <= 0
        if op == "IN":
            return actual in self.value.split(",")
        if op == "NOT IN":
            return actual not in self.value.split(",")
        if op == "LIKE":
            return self.value in actual
        if op == "NOT LIKE":
            return self.value not in actual
        if op == "STARTSWITH":
            return actual.startswith(self.value)
        if op == "ENDSWITH":
            return actual.endswith(self.value)
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        return op == "ANYTHING"

    def encode(self) -> str:
        """The condition written back as encoded-query text."""
        return f"{self.field}{self.op}{'' if self.op in _UNARY else self.value}"


@dataclass(frozen=True, slots=True)
class Order:
    """One ORDERBY / ORDERBYDESC clause."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class EncodedQuery:
    """A parsed query: OR of parts (NQ), each an AND of OR-groups, plus the ordering."""

    parts: tuple[tuple[tuple[Condition, ...], ...], ...] = ()
    order: tuple[Order, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def fields(self) -> frozenset[str]:
        """Every field the conditions and the ordering refer to."""
        names = {c.field for part in self.parts for group in part for c in group}
        names.update(o.field for o in self.order)
        return frozenset(names)

    def matches(self, get: Getter) -> bool:
        """Whether the record behind `get` is in the result set (an empty query matches all)."""
        if not self.parts:
            return True
        return any(
            all(any(cond.matches(get) for cond in group) for group in part) for part in self.parts
        )

    def without(self, fields: Iterable[str]) -> EncodedQuery:
        """The query with every condition and order on `fields` dropped (unknown columns)."""
        drop = set(fields)
        # A part whose every condition was dropped matches everything, as on the platform.
        parts = tuple(
            tuple(
                kept for group in part if (kept := tuple(c for c in group if c.field not in drop))
            )
            for part in self.parts
        )
        dropped = [c.encode() for part in self.parts for g in part for c in g if c.field in drop]
        return EncodedQuery(
            parts=parts,
            order=tuple(o for o in self.order if o.field not in drop),
            ignored=self.ignored + tuple(dropped),
        )

    def sort(self, rows: Sequence[R], get: Callable[[R, str], str]) -> list[R]:
        """`rows` in the query's order (stable; unordered when there is no ORDERBY)."""
        result = list(rows)
        # Stable sorts applied from the last key to the first give the combined order.
        for order in reversed(self.order):
            field = order.field
            result.sort(key=lambda row: _order_key(get(row, field)), reverse=order.descending)
        return result

    def encode(self) -> str:
        """The query written back as encoded-query text."""
        texts = []
        for part in self.parts:
            texts.append("^".join("^OR".join(c.encode() for c in group) for group in part))
        query = "^NQ".join(texts)
        orders = [f"ORDERBY{'DESC' if o.descending else ''}{o.field}" for o in self.order]
        return "^".join([t for t in [query, *orders] if t])


def parse_condition(text: str) -> Condition:
    """Parse one `<field><op><value>` term; raises QueryError."""
    match = _COND.match(text)
    if match is None:
        raise QueryError(f"not a condition: {text!r}")
    op = match["op"]
    value = match["value"]
    if op in _UNARY:
        value = ""
    return Condition(field=match["field"], op=op, value=value)


def parse(query: str) -> EncodedQuery:
    """Parse an encoded query; unparseable terms land in `ignored` rather than raising."""
    parts: list[tuple[tuple[Condition, ...], ...]] = []
    groups: list[list[Condition]] = []
    order: list[Order] = []
    ignored: list[str] = []
    if not query:
        return EncodedQuery()
    for raw in query.split("^"):
        term = raw
        if term in ("", "EQ"):
            continue
        if term.startswith("ORDERBYDESC"):
            _add_order(order, ignored, term, term[len("ORDERBYDESC") :], descending=True)
            continue
        if term.startswith("ORDERBY"):
            _add_order(order, ignored, term, term[len("ORDERBY") :], descending=False)
            continue
        if term.startswith("NQ"):
            if groups:
                parts.append(tuple(tuple(g) for g in groups))
            groups = []
            term = term[2:]
        joins_previous = term.startswith("OR") and bool(groups)
        if term.startswith("OR"):
            term = term[2:]
        try:
            condition = parse_condition(term)
        except QueryError:
            ignored.append(raw)
            continue
        if joins_previous:
            groups[-1].append(condition)
        else:
            groups.append([condition])
    if groups:
        parts.append(tuple(tuple(g) for g in groups))
    return EncodedQuery(parts=tuple(parts), order=tuple(order), ignored=tuple(ignored))


def _add_order(
    order: list[Order], ignored: list[str], raw: str, field: str, *, descending: bool
) -> None:
    if _FIELD.match(field):
        order.append(Order(field=field, descending=descending))
    else:
        ignored.append(raw)
