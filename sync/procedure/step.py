"""The engine's escalation step: decide, record in the ledger, queue the notices — one transaction.

`escalation.decide.decide` is pure; this module gives it the ledger's view of the ticket, hands
its decision to the ledger (which re-checks the limits under a lock, so two workers approving at
once cannot exceed them) and turns the decision's e-mail and notification actions into notices
(what happened, who is told) that every configured notifier composes into the outbox, in the
same transaction. If anything fails, nothing of it is recorded and the next attempt decides
again. The engine carries out the record actions (labels, notes, the engineering record) after
the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from connectors.email import EmailSettings
from connectors.email_render import CustomerContext, ManagementContext
from escalation.chat import (
    ArchiveChat,
    ChatAction,
    ChatStatus,
    InviteToChat,
    OpenChat,
    PostChat,
    RoomSpec,
    room_key,
)
from escalation.decide import decide
from escalation.decide.activation import not_carried_out
from escalation.decision import (
    AddNote,
    CreateEngineeringRecord,
    CustomerEvent,
    Decision,
    EmailCustomer,
    EngineeringStatus,
    NoteKind,
    NotifyManagement,
)
from escalation.policy import Policy
from mapping.model import Ticket
from sync.config.settings import Settings
from sync.notify import rooms
from sync.notify.notifier import ChatContext, Notice, Notifiers, Room
from sync.notify.outbox import notify
from sync.notify.registry import build_notifiers
from sync.procedure.email_context import (
    as_decided,
    customer_context,
    customer_recipients,
    management_context,
)
from sync.procedure.ledger import (
    decide_and_record,
    get_entry,
    ledger_view,
    quiet_decision,
    record_decision,
    set_engineering_ref,
)
from sync.store.database import StoreSession
from sync.systems import registry as systems

DecideFn = Callable[..., Decision]


class PolicyEscalation:
    """Implements the engine's `EscalationPort` over the policy, the ledger and the outbox."""

    def __init__(
        self,
        policy: Policy,
        *,
        email: EmailSettings | None = None,
        decide_and_record: DecideFn = decide_and_record,
        notifiers: Notifiers | None = None,
    ) -> None:
        self.policy = policy
        self.email = email
        self._decide_and_record = decide_and_record
        self.notifiers = notifiers if notifiers is not None else Notifiers()

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyEscalation | None:
        """The step for the settings' policy, telling every configured notifier (None: no
        policy configured)."""
        if settings.compiled_policy is None:
            return None
        return cls(
            settings.compiled_policy,
            email=settings.email_settings,
            notifiers=build_notifiers(settings),
        )

    def decide(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """Decide for an ITSM ticket, record it in the ledger and queue its e-mails.

        The ledger re-checks the limits under its lock; when another worker took the last slot
        meanwhile, the decision recorded (and returned) is the refusal.
        """
        chat = self.chat_status(tx, ticket)
        extra = {"chat": chat} if chat is not None else {}
        decision = self._decide_and_record(
            tx, ticket, now, self.policy, engineering=engineering, **extra
        )
        for notice in self._notices(tx, ticket, decision, engineering):
            notify(tx, self.notifiers, notice, now=now)
        for notice in self._chat_notices(ticket, decision, now):
            notify(tx, self.notifiers, notice, now=now)
        return decision

    def decide_unrecorded(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """The decision for an ITSM ticket, recorded nowhere yet (see `record`)."""
        view = ledger_view(tx, ticket, now, self.policy)
        chat = self.chat_status(tx, ticket)
        extra = {"chat": chat} if chat is not None else {}
        return decide(ticket, view, now, self.policy, engineering=engineering, **extra)

    def record(
        self,
        tx: StoreSession,
        ticket: Ticket,
        decision: Decision,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """Record a decision made by `decide_unrecorded` and queue its notices; the refusal
        recorded instead when another worker took the last slot meanwhile is returned."""
        recorded = record_decision(tx, ticket, decision, now)
        for notice in self._notices(tx, ticket, recorded, engineering):
            notify(tx, self.notifiers, notice, now=now)
        for notice in self._chat_notices(ticket, recorded, now):
            notify(tx, self.notifiers, notice, now=now)
        return recorded

    def not_carried_out(
        self,
        tx: StoreSession,
        ticket: Ticket,
        decision: Decision,
        record: CreateEngineeringRecord,
        reason: str,
        now: datetime,
    ) -> Decision:
        """Record, instead of `decision`, that its engineering record could not be created:
        a refusal with the system's reason, nothing announced."""
        refused = not_carried_out(
            decision, self.policy, ticket, get_entry(tx, ticket), record, reason
        )
        return self.record(tx, ticket, refused, None, now)

    # --- the escalation's chat room --------------------------------------------------------

    def chat_status(self, tx: StoreSession, ticket: Ticket) -> ChatStatus | None:
        """What the chat notifiers did for this escalation's room (None: no chat notifier, or
        the policy has no chat); `tx` may be read-only."""
        chat = getattr(self.policy, "chat", None)
        if chat is None or not chat.enabled:
            return None
        keepers = rooms.room_keepers(self.notifiers)
        if not keepers:
            return None
        entry = get_entry(tx, ticket)
        if entry is None:
            # Outside the procedure (most tickets): nothing to read.
            return ChatStatus()
        name = ticket.ref.key or ticket.ref.id
        # Before approval there is no room yet, but a chat service refusing us is known.
        key = room_key(name, entry.approved_at) if entry.approved_at is not None else None
        return rooms.room_status(tx, keepers, name, key)

    def _chat_notices(self, ticket: Ticket, decision: Decision, now: datetime) -> list[Notice]:
        """The decision's chat actions as stakeholder notices, one per action."""
        found = [
            a
            for a in decision.actions
            if isinstance(a, OpenChat | InviteToChat | PostChat | ArchiveChat)
        ]
        if not found or not len(self.notifiers):
            return []
        # The record as the queue names it, to sync it again once its room settles.
        record = f"{ticket.ref.system.value}:{systems.get(ticket.ref.system).ticket_id(ticket.ref)}"
        return [self._chat_notice(action, record, now) for action in found]

    def _chat_notice(self, action: ChatAction, record: str, now: datetime) -> Notice:
        room = _room(action.room, record)
        if isinstance(action, OpenChat):
            event, context = (
                rooms.OPEN,
                ChatContext(room, members=action.members, facts=dict(action.facts)),
            )
        elif isinstance(action, InviteToChat):
            event, context = rooms.INVITE, ChatContext(room, members=action.members)
        elif isinstance(action, ArchiveChat):
            event, context = rooms.ARCHIVE, ChatContext(room)
        else:
            event = f"{rooms.EVENT_PREFIX}{action.event}"
            context = ChatContext(room, text=action.text, facts=dict(action.facts))
        return Notice(
            audience="stakeholders",
            event=event,
            template=event.replace(":", "_"),
            ticket=room.ticket,
            version=now.isoformat(),
            context=context,
            recipients=context.members,
        )

    # --- notices: what happened and who is told; each notifier says how --------------------

    def _notices(
        self,
        tx: StoreSession,
        ticket: Ticket,
        decision: Decision,
        engineering: EngineeringStatus | None,
    ) -> list[Notice]:
        if not len(self.notifiers):
            return []
        key_name = ticket.ref.key or ticket.ref.id
        version = decision.notice_key or f"{decision.state.value}:{ticket.version or ''}"
        # The engine writes the decision to the record after this transaction commits.
        decided = as_decided(ticket, decision)
        company = (self.email.from_name if self.email is not None else "") or "Support"
        notices = []
        for action in decision.actions:
            if isinstance(action, EmailCustomer):
                event = action.event.value
                notice = Notice(
                    audience="customer",
                    event=event,
                    template=event,
                    ticket=key_name,
                    version=version,
                    context=self._customer_context(decided, decision, action, engineering, company),
                    recipients=customer_recipients(ticket),
                )
            elif isinstance(action, NotifyManagement):
                notice = Notice(
                    audience="management",
                    event=f"management:{action.event}",
                    template=f"management_{action.event}",
                    ticket=key_name,
                    version=version,
                    context=self._management_context(
                        tx, decided, decision, action, engineering, company
                    ),
                    recipients=tuple(action.recipients),
                    copies=tuple(action.cc),
                )
            else:
                continue
            notices.append(notice)
        return notices

    def _customer_context(
        self,
        ticket: Ticket,
        decision: Decision,
        action: EmailCustomer,
        engineering: EngineeringStatus | None,
        company: str,
    ) -> CustomerContext:
        cadence = None
        if action.event in (CustomerEvent.ESCALATED, CustomerEvent.PERIODIC_UPDATE):
            cadence = self.policy.customer_updates.interval(ticket.priority)
        public_resolution = None
        if engineering is not None and engineering.resolution_public:
            public_resolution = engineering.resolution
        missing: tuple[str, ...] = ()
        if action.event is CustomerEvent.NEEDS_INFORMATION:
            missing = self._missing_items(decision)
        return customer_context(
            ticket,
            company=company,
            event=action.event,
            comment_id=action.comment_id,
            resolution=public_resolution,
            missing_information=missing,
            cadence=cadence,
            reply_address=self._reply_address(),
        )

    def _reply_address(self) -> str | None:
        """Where the confirmation buttons answer: the replies mailbox, when one is read and the
        policy wants the buttons."""
        email = self.email
        if email is None or not self.policy.customer_replies.buttons:
            return None
        inbound = email.inbound
        if inbound is None or not inbound.enabled or not self.policy.customer_replies.enabled:
            return None
        return email.reply_to or email.from_address or None

    def _missing_items(self, decision: Decision) -> tuple[str, ...]:
        """What the gate found missing, as the policy names it for people to read.

        The gate's reasons carry the evidence ("not found in description/comments"), which is
        for the internal note; the customer gets each item's label only.
        """
        labels = {f"gate.{i.name}": i.description or i.name for i in self.policy.gate.items}
        return tuple(
            labels[r.rule] for r in decision.reasons if r.outcome == "fail" and r.rule in labels
        )

    def _management_context(
        self,
        tx: StoreSession,
        ticket: Ticket,
        decision: Decision,
        action: NotifyManagement,
        engineering: EngineeringStatus | None,
        company: str,
    ) -> ManagementContext:
        linked = None
        if engineering is not None and engineering.ref is not None:
            linked = engineering.ref.key or engineering.ref.id
        level = approvers = resolution = None
        waited = allowed = None
        if action.event == "resolved" and engineering is not None:
            resolution = engineering.resolution
        if action.event in ("approval_overdue", "requested"):
            target = self.policy.next_level(decision.level)
            if target is not None:
                level = target.name
                # A priority may name its own approvers (a manager for P1), else the level's.
                people = self.policy.priority_rule(ticket.priority).approvers
                if people.empty:
                    people = target.approvers
                approvers = ", ".join([*people.users, *(f"group {g}" for g in people.groups)])
            overdue = next(
                (
                    r
                    for r in decision.reasons
                    if r.rule in ("priority.approval_within_hours", "timers.approval_overdue")
                ),
                None,
            )
            if overdue is not None:
                waited = overdue.compared.get("waited_hours")
                allowed = overdue.compared.get("within_hours")
        return management_context(
            ticket,
            detail=_detail(decision, action.event),
            event=action.event,
            company=company,
            decision=decision,
            entry=get_entry(tx, ticket),
            linked_ticket=linked,
            level=level,
            approvers=approvers or None,
            waited_hours=waited,
            allowed_hours=allowed,
            resolution=resolution,
        )

    def decide_quietly(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision | None:
        """The decision when recording it would change nothing, so `tx` may be read-only (no
        e-mail either: e-mails come from actions); None when `decide` must record it."""
        chat = self.chat_status(tx, ticket)
        extra = {"chat": chat} if chat is not None else {}
        return quiet_decision(tx, ticket, now, self.policy, engineering=engineering, **extra)

    def engineering_created(self, tx: StoreSession, ticket: Ticket, engineering: str) -> None:
        """Remember in the ledger which engineering record the escalation created."""
        set_engineering_ref(tx, ticket, engineering)


# The note a decision wrote about each kind of notice, quoted in the notice (internal too).
_NOTE_OF_EVENT: dict[str, tuple[NoteKind, ...]] = {
    "rejected": (NoteKind.REJECTION,),
    "refused": (NoteKind.REFUSAL,),
    "withdrawn": (NoteKind.WITHDRAWAL,),
    "joined": (NoteKind.JOINED,),
    "approval_overdue": (NoteKind.FOLLOW_UP,),
    "unassigned": (NoteKind.FOLLOW_UP,),
    "no_response": (NoteKind.FOLLOW_UP,),
    "sla_imminent": (NoteKind.FOLLOW_UP,),
    "unconfirmed": (NoteKind.FOLLOW_UP,),
    "priority_changed": (NoteKind.PRIORITY,),
    "reopened": (NoteKind.REOPENED, NoteKind.REQUEST),
    "closed": (NoteKind.CLOSURE,),
}


def _detail(decision: Decision, event: str) -> str | None:
    """The text of the note `decision` wrote about `event`, if it wrote one."""
    kinds = _NOTE_OF_EVENT.get(event, ())
    words = {
        "approval_overdue": "Approval overdue",
        "unassigned": "not been assigned",
        "no_response": "no response",
        "sla_imminent": "SLA breach imminent",
        "unconfirmed": "not confirmed",
    }.get(event)
    notes = [a for a in decision.actions if isinstance(a, AddNote) and a.kind in kinds]
    return next((n.body for n in notes if words is None or words in n.body), None)


def _room(spec: RoomSpec, record: str) -> Room:
    """The policy's room as every chat notifier reads it."""
    return Room(
        key=spec.key,
        ticket=spec.ticket,
        name=spec.name,
        fields=dict(spec.fields),
        topic=spec.topic,
        marker=spec.marker,
        record=record,
        links=spec.links,
        join=spec.join,
        private=spec.private,
        shared=spec.shared,
    )
