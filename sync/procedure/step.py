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
from escalation.decision import (
    CustomerEvent,
    Decision,
    EmailCustomer,
    EngineeringStatus,
    NotifyManagement,
)
from escalation.policy import Policy
from mapping.model import Ticket
from sync.config.settings import Settings
from sync.notify.notifier import Notice, Notifiers
from sync.notify.outbox import notify
from sync.notify.registry import build_notifiers
from sync.procedure.email_context import (
    as_decided,
    customer_context,
    customer_recipients,
    management_context,
)
from sync.procedure.ledger import decide_and_record, get_entry, quiet_decision, set_engineering_ref
from sync.store.database import StoreSession

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
        decision = self._decide_and_record(tx, ticket, now, self.policy, engineering=engineering)
        for notice in self._notices(tx, ticket, decision, engineering):
            notify(tx, self.notifiers, notice, now=now)
        return decision

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
                (r for r in decision.reasons if r.rule == "priority.approval_within_hours"), None
            )
            if overdue is not None:
                waited = overdue.compared.get("waited_hours")
                allowed = overdue.compared.get("within_hours")
        return management_context(
            ticket,
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
        return quiet_decision(tx, ticket, now, self.policy, engineering=engineering)

    def engineering_created(self, tx: StoreSession, ticket: Ticket, engineering: str) -> None:
        """Remember in the ledger which engineering record the escalation created."""
        set_engineering_ref(tx, ticket, engineering)
