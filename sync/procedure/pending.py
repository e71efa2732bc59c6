"""Decision actions recorded but not yet carried out, kept in the store between the two.

The engine records a decision (ledger, outbox) in one transaction and then writes to the
systems. Were it to die in between, the next pass would decide again and find nothing new to
do, and the tag, note or engineering record would be lost. So the actions to carry out are
parked in the same transaction, under the ticket, and cleared once done; a retry merges them
with whatever the new decision asks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from escalation.decision import (
    Action,
    AddEngineeringComment,
    AddLabel,
    AddNote,
    CloseFurtherRecords,
    CreateEngineeringRecord,
    JoinEscalation,
    MoveStatus,
    NoteKind,
    PostLinks,
    RemoveLabel,
    SetPriority,
    action_to_dict,
)
from mapping.model import Priority, Status, System, Ticket, Visibility
from sync.store.database import NewSnapshot, StoreSession

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
    "join_escalation": JoinEscalation,
    "close_further_records": CloseFurtherRecords,
    "add_engineering_comment": AddEngineeringComment,
}


def carried_out_by_engine(action: Action) -> bool:
    """Actions the engine performs on the records (e-mails go through the outbox instead)."""
    return isinstance(action, tuple(_ACTION_TYPES.values()))


def _key(ticket: Ticket) -> str:
    return parked_key(ticket.ref.system, ticket.ref.id)


def parked_key(system: System, ident: str) -> str:
    """The key a ticket's parked actions are kept under: its system and its `ref.id`."""
    return f"{system.value}:{ident}"


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
    elif kind is AddEngineeringComment:
        args["visibility"] = Visibility(args["visibility"])
    elif kind is CreateEngineeringRecord:
        args["target_system"] = System(args["target_system"])
        args["labels"] = tuple(args.get("labels") or ())
        args["dispatch"] = tuple((str(k), str(v)) for k, v in args.get("dispatch") or ())
    action: Action = kind(**args)
    return action


# PostLinks, for many tickets at once: a backfill parks it as it records each new pair, and
# clears it once both links are posted and the content mirrored, so a run cut short in between
# finishes those pairs the next time instead of skipping them as already paired.
_POST_LINKS = action_to_dict(PostLinks())


def awaiting_links(tx: StoreSession, keys: Collection[str]) -> set[str]:
    """Which of these `parked_key`s have PostLinks parked."""
    rows = tx.get_snapshots_of(PENDING, keys)
    return {k for k, row in rows.items() if _POST_LINKS in row.data.get("actions", [])}


def park_links(tx: StoreSession, keys: Collection[str]) -> None:
    """Park PostLinks under these `parked_key`s, next to whatever else is parked there."""
    _replace_links(tx, keys, parked=True)


def clear_links(tx: StoreSession, keys: Collection[str]) -> None:
    """Drop PostLinks from what is parked under these `parked_key`s."""
    _replace_links(tx, keys, parked=False)


def _replace_links(tx: StoreSession, keys: Collection[str], *, parked: bool) -> None:
    rows = tx.get_snapshots_of(PENDING, keys)
    writes = []
    for key in keys:
        row = rows.get(key)
        actions = [a for a in (row.data.get("actions", []) if row else []) if a != _POST_LINKS]
        if parked:
            actions.append(_POST_LINKS)
        elif row is None:
            continue
        writes.append(NewSnapshot(PENDING, key, {"actions": actions}))
    tx.put_snapshots(writes)
