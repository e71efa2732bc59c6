"""Request signals that stay on a ticket (a label, a field value) and how each asks once.

A label keeps asking for as long as it is there, so when its request ends without an
escalation (rejected, refused, withdrawn) or the escalation ends, the label is taken off
(`request.clear_labels`): adding it again asks again. A field value asks once per value: the
value is consumed by the request it started, and setting another requesting value asks again.
"""

from __future__ import annotations

from escalation.decide.context import Run
from escalation.decision import RemoveLabel


def clear_labels(run: Run) -> None:
    """Take the request labels off the ticket (when the policy says so)."""
    req = run.policy.request
    if not req.clear_labels or not req.labels:
        return
    present = {lb.casefold(): lb for lb in run.ticket.labels}
    queued = {a.label for a in run.actions if isinstance(a, RemoveLabel)}
    for label in req.labels:
        found = present.get(label.casefold())
        if found is not None and found not in queued:
            run.actions.append(RemoveLabel(found))


def field_token(path: str, value: str) -> str:
    """The token a requesting field value is consumed under."""
    return f"request-field:{path}={value.casefold()}"
