"""The completeness gate: what a request must carry before it goes further.

Each gate item is checked against the ticket (a field, a pattern in the text or comments, an
attachment, a named contact). Items named in a priority's extra_gate_items apply only to that
priority; items with levels apply only when escalating to one of them.
"""

from __future__ import annotations

import re

from escalation.decide.context import Run
from escalation.decide.reading import as_text, field_value, from_mail, our_note
from escalation.policy import (
    AttachmentItem,
    ContactItem,
    FieldItem,
    GateItem,
    TextItem,
    TextSource,
)
from escalation.wording import plural
from mapping.model import Person, Visibility


def missing_items(run: Run) -> list[tuple[str, str]]:
    """The gate items the ticket lacks, as (name, description); records a reason for each."""
    gate = run.policy.gate
    if not gate.enabled or not run.rule.gate_required:
        run.why(
            "gate",
            "info",
            "completeness gate skipped"
            + ("" if gate.enabled else " (disabled)")
            + ("" if run.rule.gate_required else " for this priority"),
        )
        return []
    wanted = set(run.rule.extra_gate_items)
    target = run.target()
    items = [
        i
        for i in gate.items
        if (i.name in wanted or not _only_for_priorities(run, i.name))
        and (not i.levels or (target is not None and target.name in i.levels))
    ]
    missing: list[tuple[str, str]] = []
    for item in items:
        ok, evidence = _check_item(run, item)
        run.why(
            f"gate.{item.name}",
            "pass" if ok else "fail",
            f"{item.description or item.name}: {evidence}",
            {"check": item.check, "found": ok},
        )
        if not ok:
            missing.append((item.name, item.description or item.name))
    return missing


def _only_for_priorities(run: Run, name: str) -> bool:
    """Items named in some priority's extra_gate_items apply only to those priorities."""
    return any(name in r.extra_gate_items for r in run.policy.priorities.values())


def _texts(run: Run, sources: tuple[TextSource, ...]) -> list[str]:
    ticket = run.ticket
    out: list[str] = []
    for src in sources:
        if src == "summary":
            out.append(ticket.summary or "")
        elif src == "description":
            out.append(ticket.description or "")
        else:
            for c in ticket.comments:
                if our_note(ticket, c.body) and not from_mail(c.body):
                    # Our own notes quote what is missing; they are no evidence of it. A
                    # customer's e-mail reply we posted is the customer's words: it is.
                    continue
                if (
                    src == "comments"
                    or (src == "internal_comments" and c.visibility is Visibility.INTERNAL)
                    or (src == "public_comments" and c.visibility is Visibility.PUBLIC)
                ):
                    out.append(c.body)
    return out


def _check_item(run: Run, item: GateItem) -> tuple[bool, str]:
    """Whether the ticket has the item, and the evidence as a reason states it."""
    ticket = run.ticket
    if isinstance(item, FieldItem):
        text = as_text(field_value(ticket, item.field)).strip()
        ok = len(text) >= item.min_length
        return ok, (
            f"{item.field} is filled ({plural(len(text), 'character')})"
            if ok
            else f"{item.field} is empty or shorter than {plural(item.min_length, 'character')}"
        )
    if isinstance(item, TextItem):
        rx = re.compile(item.pattern)
        ok = any(rx.search(t) for t in _texts(run, item.search))
        return ok, (
            f"found in {'/'.join(item.search)}" if ok else f"not found in {'/'.join(item.search)}"
        )
    if isinstance(item, AttachmentItem):
        atts = ticket.attachments
        if item.filename:
            frx = re.compile(item.filename)
            atts = tuple(a for a in atts if frx.search(a.filename))
        ok = len(atts) >= item.min_count
        return ok, f"{plural(len(atts), 'matching attachment')}, {item.min_count} needed"
    assert isinstance(item, ContactItem)
    if item.field:
        value = field_value(ticket, item.field)
        named = (
            bool(value.name or value.email)
            if isinstance(value, Person)
            else bool(as_text(value).strip())
        )
        if named:
            return True, f"contact named in {item.field}"
    if item.pattern and any(re.search(item.pattern, t) for t in _texts(run, item.search)):
        return True, "contact named in the text"
    return False, "no contact named"
