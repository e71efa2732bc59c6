"""What an operator may do from the console, each written to the audit log with who did it.

- replay a dead letter: its event goes back on the queue (as `deadletters replay ID`), and the
  dead letter is marked replayed, so it leaves the list;
- requeue a dead message: another full set of attempts (as `email requeue`);
- resolve an message left unknown by a crash: sent (nothing more to do) or not sent (send it).

The audit row goes on the record the action concerns (the dead letter's ticket; the message's
ticket under the system `email`), so the ticket page's timeline shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from sync.console.auth import Identity
from sync.notify.outbox import OutboxRow, requeue_dead, resolve_unknown
from sync.store.database import Store, StoreSession

log = structlog.get_logger("escalation_sync.console")

Enqueue = Callable[[str, str, dict[str, Any] | None], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did, in a sentence for the page."""

    ok: bool
    message: str


class NotAllowed(Exception):
    """The person's role does not allow this action."""


class Actions:
    """Operator actions on the store and the queue."""

    def __init__(
        self,
        store: Store,
        enqueue: Enqueue,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._enqueue = enqueue
        self._clock = clock

    @staticmethod
    def _allowed(who: Identity) -> None:
        if not who.may_act:
            raise NotAllowed(f"{who.name} is a {who.role}: only operators may act")

    def replay(self, dead_letter_id: int, who: Identity) -> Outcome:
        """Put a dead letter's event back on the queue and mark it replayed."""
        self._allowed(who)
        item = self.store.get_dead_letter(dead_letter_id)
        if item is None:
            return Outcome(False, f"There is no dead letter {dead_letter_id}.")
        if item.replayed_at is not None:
            return Outcome(False, f"Dead letter {dead_letter_id} was already replayed.")
        event = item.event if item.event.get("event") else None
        self._enqueue(item.system, item.ticket, event)
        with self.store.session() as tx:
            tx.mark_replayed(item.id, at=self._clock())
            tx.audit(
                item.system,
                item.ticket,
                "dead letter",
                f"#{item.id} {item.error_class}",
                "replayed",
                reason=f"dead letter replayed from the console (it failed with: "
                f"{item.reason[:300]})",
                actor=who.audit_name,
            )
        log.info(
            "dead letter replayed from the console",
            dead_letter=item.id,
            system=item.system,
            ticket=item.ticket,
            by=who.name,
        )
        return Outcome(
            True, f"Dead letter {item.id} ({item.system} {item.ticket}) is queued again."
        )

    def requeue(self, outbox_id: int, who: Identity) -> Outcome:
        """Give a dead message another full set of attempts."""
        self._allowed(who)
        now = self._clock()
        with self.store.session() as tx:
            entry = _entry(tx, outbox_id)
            if entry is None:
                return Outcome(False, f"There is no message {outbox_id} in the outbox.")
            if not requeue_dead(tx, outbox_id, now=now):
                return Outcome(False, f"Message {outbox_id} is {entry.status}, not dead.")
            tx.audit(
                entry.channel,
                entry.ticket_ref,
                f"{entry.channel} {entry.event}",
                "dead",
                "pending",
                reason=f"outbox message {outbox_id} requeued from the console "
                f"(last error: {(entry.last_error or '-')[:300]})",
                actor=who.audit_name,
            )
        log.info("message requeued from the console", outbox_id=outbox_id, by=who.name)
        return Outcome(True, f"Message {outbox_id} will be sent again.")

    def resolve(self, outbox_id: int, *, sent: bool, who: Identity) -> Outcome:
        """Settle an message whose send was interrupted: it went out, or send it again."""
        self._allowed(who)
        now = self._clock()
        with self.store.session() as tx:
            entry = _entry(tx, outbox_id)
            if entry is None:
                return Outcome(False, f"There is no message {outbox_id} in the outbox.")
            if not resolve_unknown(tx, outbox_id, sent=sent, now=now):
                return Outcome(False, f"Message {outbox_id} is {entry.status}, not unknown.")
            tx.audit(
                entry.channel,
                entry.ticket_ref,
                f"{entry.channel} {entry.event}",
                "unknown",
                "sent" if sent else "pending",
                reason=f"outbox message {outbox_id} resolved from the console: "
                + ("the relay had sent it" if sent else "not sent; it will be sent again"),
                actor=who.audit_name,
            )
        log.info("message resolved from the console", outbox_id=outbox_id, sent=sent, by=who.name)
        return Outcome(
            True,
            f"Message {outbox_id} marked sent."
            if sent
            else f"Message {outbox_id} will be sent again.",
        )


def _entry(tx: StoreSession, outbox_id: int) -> OutboxRow | None:
    return tx.orm.get(OutboxRow, outbox_id)
