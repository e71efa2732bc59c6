"""The JQL subset the simulator understands.

```
query    := [expr] [ORDER BY field [ASC|DESC] {, field [ASC|DESC]}]
expr     := term {OR term}
term     := factor {AND factor}
factor   := NOT factor | "(" expr ")" | clause
clause   := field op value | field [NOT] IN "(" value {, value} ")" | field IS [NOT] EMPTY
field    := project | key | issuekey | labels | status | statusCategory | priority | issuetype
            | assignee | reporter | summary | updated | created | resolution | resolved
op       := = | != | >= | <= | > | <  (~ on summary: case-insensitive substring)
value    := word | "string" | function "(" ")"      function := currentUser | now
```
As Atlassian's advanced search reference (JQL fields, functions) describes them:
- datetime values (`"2026-11-23 12:00"`, `"2026-11-23"`, `"2026/11/23 12:00"`) are read in the
  searching user's time zone; a relative one (`-1d`, `-5m`, `"-2w 3d"`, units w d h m) counts
  from now; `now()` is now;
- `resolution = Unresolved` finds issues with no resolution;
- `statusCategory` takes a category's name (`"To Do"`, `"In Progress"`, `Done`), key (`new`,
  `indeterminate`, `done`) or id;
- `currentUser()` is the searching user (on user fields).
Anything else is a JQL error (HTTP 400), with Jira's wording where it has one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

Predicate = Callable[[Any], bool]


class JqlError(ValueError):
    """The query is outside the supported subset or malformed."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|=|>|<|~|!~)
      | (?P<punct>[(),])
      | (?P<word>[^\s(),=!<>~"']+)
    )""",
    re.VERBOSE,
)

FIELDS = {
    "statuscategory",
    "resolutiondate",
    "resolved",
    "project",
    "key",
    "issuekey",
    "id",
    "labels",
    "status",
    "priority",
    "issuetype",
    "type",
    "assignee",
    "reporter",
    "summary",
    "updated",
    "created",
    "resolution",
}
DATE_FIELDS = {"updated", "created", "resolutiondate"}
USER_FIELDS = {"assignee", "reporter"}
_RELATIVE = re.compile(r"^([+-]?)((?:\d+[wdhm]\s*)+)$")
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {pos}.")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append(Token(kind, value))
    return tokens


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled query: `matches(view)` and the ORDER BY keys."""

    predicate: Predicate
    order: tuple[tuple[str, bool], ...]  # (field, descending)

    def matches(self, view: Any) -> bool:
        return self.predicate(view)


class _Parser:
    def __init__(self, tokens: list[Token], zone: tzinfo) -> None:
        self.tokens = tokens
        self.pos = 0
        self.zone = zone

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def peek_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.text.upper() in words

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise JqlError("Error in the JQL Query: the query ended unexpectedly.")
        self.pos += 1
        return tok

    def expect_punct(self, char: str) -> None:
        tok = self.take()
        if tok.kind != "punct" or tok.text != char:
            raise JqlError(f"Error in the JQL Query: expecting '{char}' but got '{tok.text}'.")

    def parse(self) -> Query:
        predicate: Predicate = _always
        if self.peek() is not None and not self.peek_word("ORDER"):
            predicate = self.expr()
        order: list[tuple[str, bool]] = []
        if self.peek_word("ORDER"):
            self.take()
            if not self.peek_word("BY"):
                raise JqlError("Error in the JQL Query: expecting 'BY' after 'ORDER'.")
            self.take()
            while True:
                field = self.take().text.lower()
                if field not in FIELDS:
                    raise JqlError(f"Not able to sort using field '{field}'.")
                descending = False
                if self.peek_word("ASC", "DESC"):
                    descending = self.take().text.upper() == "DESC"
                order.append((field, descending))
                tok = self.peek()
                if tok is not None and tok.kind == "punct" and tok.text == ",":
                    self.take()
                    continue
                break
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: unexpected '{self.peek().text}'.")  # type: ignore[union-attr]
        return Query(predicate, tuple(order))

    def expr(self) -> Predicate:
        terms = [self.term()]
        while self.peek_word("OR"):
            self.take()
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        return lambda view: any(t(view) for t in terms)

    def term(self) -> Predicate:
        factors = [self.factor()]
        while self.peek_word("AND"):
            self.take()
            factors.append(self.factor())
        if len(factors) == 1:
            return factors[0]
        return lambda view: all(f(view) for f in factors)

    def factor(self) -> Predicate:
        if self.peek_word("NOT"):
            self.take()
            inner = self.factor()
            return lambda view: not inner(view)
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == "(":
            self.take()
            inner = self.expr()
            self.expect_punct(")")
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        field_tok = self.take()
        field = field_tok.text.lower()
        if field_tok.kind not in ("word", "str") or field not in FIELDS:
            raise JqlError(
                f"Field '{field_tok.text}' does not exist or you do not have permission to view it."
            )
        field = {
            "issuekey": "key",
            "type": "issuetype",
            "resolved": "resolutiondate",
        }.get(field, field)
        if self.peek_word("IS"):
            self.take()
            negate = False
            if self.peek_word("NOT"):
                self.take()
                negate = True
            if not self.peek_word("EMPTY", "NULL"):
                raise JqlError("Error in the JQL Query: expecting EMPTY after IS.")
            self.take()
            return lambda view: _is_empty(view.value(field)) != negate
        negate_in = False
        if self.peek_word("NOT"):
            self.take()
            negate_in = True
            if not self.peek_word("IN"):
                raise JqlError("Error in the JQL Query: expecting IN after NOT.")
        if self.peek_word("IN"):
            self.take()
            self.expect_punct("(")
            values = [self.value(field)]
            while True:
                tok = self.take()
                if tok.kind == "punct" and tok.text == ",":
                    values.append(self.value(field))
                    continue
                if tok.kind == "punct" and tok.text == ")":
                    break
                raise JqlError("Error in the JQL Query: expecting ',' or ')'.")
            return lambda view: (
                any(_equals(view.value(field), _resolved(v, view)) for v in values) != negate_in
            )
        op_tok = self.take()
        if op_tok.kind != "op":
            raise JqlError(f"Error in the JQL Query: expecting an operator, got '{op_tok.text}'.")
        value = self.value(field)
        return _compare(field, op_tok.text, value)

    def value(self, field: str) -> Any:
        tok = self.take()
        if tok.kind not in ("str", "word"):
            raise JqlError(f"Error in the JQL Query: expecting a value, got '{tok.text}'.")
        following = self.peek()
        if tok.kind == "word" and following is not None and following.text == "(":
            return self.function(tok.text, field)
        if field == "resolution" and tok.text.casefold() == "unresolved":
            return UNRESOLVED
        if field in DATE_FIELDS:
            relative = _RELATIVE.match(tok.text.strip())
            if relative is not None:
                sign = -1 if relative.group(1) == "-" else 1
                seconds = sum(
                    int(n) * _UNITS[unit]
                    for n, unit in re.findall(r"(\d+)([wdhm])", relative.group(2))
                )
                return Dynamic(functools.partial(_relative, timedelta(seconds=sign * seconds)))
            for fmt in _DATE_FORMATS:
                try:
                    return datetime.strptime(tok.text, fmt).replace(tzinfo=self.zone)
                except ValueError:
                    continue
            raise JqlError(
                f"Date value '{tok.text}' for field '{field}' is invalid. Valid formats include: "
                "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a "
                "period format e.g. '-5d', '4w 2d'."
            )
        return tok.text

    def function(self, name: str, field: str) -> Any:
        self.expect_punct("(")
        self.expect_punct(")")
        lowered = name.casefold()
        if lowered == "currentuser" and field in USER_FIELDS:
            return Dynamic(lambda view: view.viewer)
        if lowered == "now" and field in DATE_FIELDS:
            return Dynamic(lambda view: view.now)
        if lowered in ("currentuser", "now"):
            raise JqlError(f"The function '{name}' does not support the field '{field}'.")
        raise JqlError(f"Unable to find JQL function '{name}()'.")


@dataclass(frozen=True, slots=True)
class Dynamic:
    """A value known only when the query runs: the searching user, now, a relative date."""

    resolve: Callable[[Any], Any]


class _Unresolved:
    """`resolution = Unresolved`: the issue has no resolution."""

    def __repr__(self) -> str:
        return "Unresolved"


UNRESOLVED = _Unresolved()


def _relative(offset: timedelta, view: Any) -> Any:
    return view.now + offset


def _resolved(value: Any, view: Any) -> Any:
    return value.resolve(view) if isinstance(value, Dynamic) else value


def _always(view: Any) -> bool:
    return True


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def _equals(actual: Any, expected: Any) -> bool:
    if expected is UNRESOLVED:
        return actual is None
    if isinstance(actual, list | tuple | set | frozenset):
        return any(_equals(a, expected) for a in actual)
    if actual is None or expected is None:
        return False
    if isinstance(expected, str):
        return str(actual).casefold() == expected.casefold()
    return bool(actual == expected)


def _compare(field: str, op: str, value: Any) -> Predicate:
    if op == "=":
        return lambda view: _equals(view.value(field), _resolved(value, view))
    if op == "!=":
        return lambda view: not _equals(view.value(field), _resolved(value, view))
    if op in ("~", "!~"):
        needle = str(value).casefold()
        negate = op == "!~"
        return lambda view: (needle in str(view.value(field) or "").casefold()) != negate
    if field not in DATE_FIELDS:
        raise JqlError(f"The operator '{op}' is not supported by the '{field}' field.")
    checks: dict[str, Callable[[datetime, datetime], bool]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
    }
    check = checks[op]

    def predicate(view: Any) -> bool:
        actual = view.value(field)
        return actual is not None and check(actual, _resolved(value, view))

    return predicate


def compile_jql(text: str, zone: tzinfo) -> Query:
    """Compile `text`; datetime literals are read in `zone`. Raises JqlError."""
    return _Parser(tokenize(text or ""), zone).parse()
