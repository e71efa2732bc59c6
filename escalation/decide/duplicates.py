"""One escalation for one issue: a repeat joins the escalation already open, and follows it.

The ledger's view names the open escalation of another ticket with the same fingerprint (or
the ticket this one's link field names). A request on a repeat joins it: a note, a link to
that escalation's engineering record, no second record and no second slot. From then on the
joined ticket follows the one it joined: its customer hears that it was escalated once that
escalation is active, and that it was resolved when it is; if it ends without running
(rejected, refused, withdrawn), the joined ticket is free to ask on its own.
"""

from __future__ import annotations

from escalation.decide import notices
from escalation.decide.context import FINISHED, WAITING, Flow, Run
from escalation.decide.signals import clear_labels
from escalation.decide.times import aware, stamp
from escalation.decision import (
    CustomerEvent,
    EmailCustomer,
    JoinEscalation,
    LedgerEntry,
    MoveStatus,
    NoteKind,
    OpenEscalation,
    ledger_key,
)
from mapping.model import EscalationState

S = EscalationState


def _active(entry: LedgerEntry) -> bool:
    return entry.approved_at is not None and entry.released_at is None


def _name(primary: OpenEscalation) -> str:
    return primary.entry.ticket_key or primary.key


def join_open(run: Run) -> bool:
    """Join the open escalation of the same issue instead of starting one; False if none."""
    primary = run.ledger.primary
    if not run.policy.duplicates.join or primary is None:
        return False
    if primary.key == ledger_key(run.ticket.ref):
        return False
    entry = primary.entry
    if entry.state not in WAITING and not _active(entry):
        return False
    run.state = S.JOINED
    run.joined_to = primary.key
    name = _name(primary)
    where = "active" if _active(entry) else entry.state.value.replace("_", " ")
    eng = entry.engineering_ref
    run.why(
        "duplicates.join",
        "pass",
        f"the same issue has an escalation {where} on {name}: this ticket joins it",
        {"primary": primary.key, "state": entry.state.value, "engineering": eng},
    )
    run.note(
        NoteKind.JOINED,
        f"joined:{primary.key}@{run.request_key()}",
        f"This ticket repeats {name}, whose escalation is {where}"
        + (f" (engineering record {eng})" if eng else "")
        + ": it joins that escalation instead of starting another. "
        f"Reason for this request: {run.request_reason or 'not given'}.",
    )
    run.actions.append(JoinEscalation(primary.key, entry.ticket_key, eng))
    if eng:
        run.once(f"joined-link:{eng}")
    notices.tell(run, "joined")
    return True


def follow_primary(run: Run) -> Flow:
    """Stage: a joined ticket follows the escalation it joined."""
    if run.state is not S.JOINED:
        return Flow.NEXT
    primary = run.ledger.primary
    t = run.ticket
    closed = t.status is not None and t.status in run.policy.closure.itsm_closed_statuses
    if closed:
        run.state = S.CLOSED
        run.why("closure.itsm_closed", "info", "the joined ticket's record was closed")
        return Flow.DONE
    if primary is None or primary.key != run.joined_to:
        run.state = S.NONE
        run.joined_to = None
        run.why("duplicates.follow", "info", "the escalation this ticket joined is gone")
        return Flow.NEXT
    entry = primary.entry
    name = _name(primary)
    run.why(
        "duplicates.follow",
        "info",
        f"follows the escalation of {name}, which is {entry.state.value}",
        {"primary": primary.key, "state": entry.state.value},
    )
    eng = entry.engineering_ref
    if eng and run.once(f"joined-link:{eng}"):
        run.actions.append(JoinEscalation(primary.key, entry.ticket_key, eng))
    if _active(entry) and entry.approved_at is not None:
        approved = aware(entry.approved_at).isoformat()
        if run.once(f"joined-escalated:{primary.key}@{approved}"):
            run.aside(
                NoteKind.JOINED,
                f"The escalation of {name} this ticket joined is active at {entry.level}"
                + (f" (engineering record {eng})" if eng else "")
                + f" since {stamp(entry.approved_at)}.",
            )
            if run.policy.on_approval.email_customer:
                run.actions.append(EmailCustomer(CustomerEvent.ESCALATED))
        return Flow.NEXT
    if entry.state in FINISHED:
        _resolved_with(run, primary)
        return Flow.DONE
    if entry.state in (S.REJECTED, S.REFUSED, S.WITHDRAWN, S.NONE):
        run.state = S.REJECTED if entry.state is S.REJECTED else S.WITHDRAWN
        run.joined_to = None
        run.note(
            NoteKind.JOINED,
            f"joined-ended:{primary.key}@{run.request_key()}",
            f"The escalation of {name} this ticket joined ended without running "
            f"({entry.state.value}). Ask again on this ticket if it still needs escalating.",
        )
        clear_labels(run)
        return Flow.DONE
    return Flow.NEXT


def _resolved_with(run: Run, primary: OpenEscalation) -> None:
    """The escalation joined was resolved: so is this ticket's part in it."""
    rules = run.policy.closure
    t = run.ticket
    run.state = S.RESOLVED
    name = _name(primary)
    run.note(
        NoteKind.RESOLUTION,
        f"joined-resolved:{primary.key}@{run.request_key()}",
        f"The escalation of {name} this ticket joined was resolved at {primary.entry.level} "
        f"(engineering record {primary.entry.engineering_ref or 'not recorded'}). The "
        f"resolution is on {name}.",
    )
    if rules.move_to is not None and t.status != rules.move_to:
        run.actions.append(MoveStatus(rules.move_to))
    if rules.ask_customer_to_confirm:
        run.actions.append(EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM))
    clear_labels(run)
