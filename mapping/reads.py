"""Which keys of a vendor record a system's mapping reads: what a bulk read must ask for.

A scan that returns only the columns the mapping reads (ServiceNow `sysparm_fields`, Jira
`fields`) moves a fraction of the bytes of a full record, yet maps to the same canonical ticket.
The keys are found by walking each read expression's JMESPath syntax tree; an expression this
walk does not understand makes the answer None ("ask for everything"), never a short list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jmespath.parser import ParsedResult

from mapping.model import System
from mapping.spec import Mapping as SyncMapping

Path = tuple[str, ...]

# Nodes whose children are each evaluated on the same input, with no path as the result.
_FAN_OUT = frozenset(
    {
        "multi_select_list",
        "or_expression",
        "and_expression",
        "not_expression",
        "comparator",
        "function_expression",
    }
)
# Nodes whose children each read the previous child's result.
_CHAINS = frozenset({"subexpression", "pipe", "index_expression"})
_PROJECTIONS = frozenset({"projection", "value_projection", "filter_projection"})
# Item-level paths (a comment's body...) are read inside the list a record-level path returns.
_RECORD_LEVEL = ("ref.", "comments.path", "attachments.path")


class _Unknown(Exception):
    """An expression node this walk does not understand."""


def _walk(node: Mapping[str, Any], base: Path | None, reads: set[Path]) -> Path | None:
    """The path of `node`'s value when evaluated on the value at `base` (None: a computed value,
    or one inside a list or a computed value); values consumed on the way are added to `reads`."""
    kind = node["type"]
    children = node.get("children") or []
    if kind == "field":
        # Under an unknown base the value is inside one already consumed whole.
        return None if base is None else (*base, str(node["value"]))
    if kind in ("identity", "current", "index", "slice"):
        return base
    if kind in ("literal", "raw_string"):
        return None
    if kind == "flatten":
        return _walk(children[0], base, reads)
    if kind in _CHAINS:
        at = base
        for child in children:
            at = _walk(child, at, reads)
        return at
    if kind in _PROJECTIONS:
        items = _walk(children[0], base, reads)
        for child in children[1:]:
            _consume(_walk(child, items, reads), reads)
        return None
    if kind == "multi_select_dict":
        for pair in children:
            _consume(_walk(pair["children"][0], base, reads), reads)
        return None
    if kind in _FAN_OUT:
        for child in children:
            _consume(_walk(child, base, reads), reads)
        return None
    if kind == "expref":
        return None
    raise _Unknown(kind)


def _consume(path: Path | None, reads: set[Path]) -> None:
    if path is not None:
        reads.add(path)


def paths_read(expressions: Iterable[ParsedResult]) -> set[Path] | None:
    """Every key path whose value the expressions use; None if one is not understood."""
    reads: set[Path] = set()
    try:
        for expression in expressions:
            _consume(_walk(expression.parsed, (), reads), reads)
    except (_Unknown, KeyError, IndexError, TypeError):
        return None
    return reads


def keys_read(mapping: SyncMapping, system: System, under: Path = ()) -> frozenset[str] | None:
    """The keys directly below `under` that mapping `system`'s records reads.

    `keys_read(m, SERVICENOW)` names the incident columns (and the `_journal`-style keys an
    adapter adds); `keys_read(m, JIRA, ("fields",))` names the issue fields. None means the
    whole record is needed: an expression was not understood, or reads `under` itself.
    """
    compiled = mapping.systems[system]
    expressions = [f.read for f in compiled.fields.values() if f.read is not None]
    expressions += [p for name, p in compiled.paths.items() if name.startswith(_RECORD_LEVEL)]
    reads = paths_read(expressions)
    depth = len(under)
    if reads is None or any(p == under[: len(p)] for p in reads):
        return None
    return frozenset(p[depth] for p in reads if len(p) > depth and p[:depth] == under)
