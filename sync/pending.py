"""Decision actions recorded but not yet carried out, kept in the store between the two.

The engine records a decision (ledger, outbox) in one transaction and then writes to the
systems. Were it to die in between, the next pass would decide again and find nothing new to
do, and the tag, note or engineering record would be lost. So the actions to carry out are
parked in the same transaction, under the ticket, and cleared once done; a retry merges them
with whatever the new decision asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from escalation.decision import (
    Action,
    AddLabel,
    AddNote,
    CreateEngineeringRecord,
    MoveStatus,
    NoteKind,
    PostLinks,
    RemoveLabel,
    SetPriority,
    action_to_dict,
)
from mapping.model import Priority, Status, System, Ticket, Visibility
from sync.store import StoreSession

# Pseudo-system of the snapshot rows that hold parked actions.
PENDING = "pending"

_ACTION_TYPES: dict[str, type[Any]] = {
    "add_label": AddLabel,
    "remove_label": RemoveLabel,
    "set_priority": SetPriority,
    "add_note": AddNote,
    "create_engineering_record": CreateEngineeringRecord,
    "post_links": PostLinks,
    "move_status": MoveStatus,
}


def carried_out_by_engine(action: Action) -> bool:
    """Actions the engine performs on the records (e-mails go through the outbox instead)."""
    return isinstance(action, tuple(_ACTION_TYPES.values()))


def _key(ticket: Ticket) -> str:
    return f"{ticket.ref.system.value}:{ticket.ref.id}"


def park(tx: StoreSession, ticket: Ticket, actions: Sequence[Action]) -> None:
    """Keep `actions` for `ticket` in the caller's transaction (an empty list clears them)."""
    tx.put_snapshot(PENDING, _key(ticket), {"actions": [action_to_dict(a) for a in actions]})


def parked(tx: StoreSession, ticket: Ticket) -> list[Action]:
    """The actions parked for `ticket` and not yet done."""
    row = tx.get_snapshot(PENDING, _key(ticket))
    if row is None:
        return []
    loaded = (load_action(d) for d in row.data.get("actions", []))
    return [a for a in loaded if a is not None]


def load_action(data: Mapping[str, Any]) -> Action | None:
    """An action from its `action_to_dict` form (None for a kind this engine does not do)."""
    kind = _ACTION_TYPES.get(str(data.get("action")))
    if kind is None:
        return None
    args = {k: v for k, v in data.items() if k != "action"}
    if kind is SetPriority:
        args["priority"] = Priority(args["priority"])
    elif kind is MoveStatus:
        args["status"] = Status(args["status"])
    elif kind is AddNote:
        args["visibility"] = Visibility(args["visibility"])
        args["kind"] = NoteKind(args["kind"])
    elif kind is CreateEngineeringRecord:
        args["target_system"] = System(args["target_system"])
        args["labels"] = tuple(args.get("labels") or ())
    action: Action = kind(**args)
    return action
