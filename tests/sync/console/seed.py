"""A store holding what the console shows: escalations in every state, a pair with its audit
trail, mail in the outbox and a dead letter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from connectors.email_render import RenderedEmail
from sync.notify.outbox import DEAD, OutboxKey, OutboxRow, enqueue
from sync.procedure.ledger import LedgerRow
from sync.store.database import Store
from tests.sync import pairs

NOW = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
ACTIVE_SYS_ID = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
WAITING_SYS_ID = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
REFUSED_SYS_ID = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"


def _ticket(sys_id: str, number: str, summary: str, priority: str, team: str) -> dict[str, object]:
    return {
        "ref": {
            "system": "servicenow",
            "id": sys_id,
            "key": number,
            "url": f"https://example.service-now.com/nav_to.do?uri=incident.do?sys_id={sys_id}",
        },
        "summary": summary,
        "status": "in_progress",
        "priority": priority,
        "assignee": {"id": "u1", "name": "Lee Support", "email": "lee@example.com"},
        "custom_fields": {"assignment_group": team, "sla_due": "2026-03-11T18:00:00+00:00"},
    }


def seed(store: Store) -> None:
    """Three escalations (active, waiting, refused), one pair, mail and a dead letter."""
    with store.session() as tx:
        for sys_id, number, summary, priority, team in (
            (ACTIVE_SYS_ID, "INC0010002", "Checkout fails for all EU customers", "P1", "Payments"),
            (WAITING_SYS_ID, "INC0010004", "Invoices show the <b>wrong</b> total", "P2", "Billing"),
            (REFUSED_SYS_ID, "INC0010003", "Confirmation e-mails delayed", "P2", "Messaging"),
        ):
            tx.put_snapshot("servicenow", sys_id, _ticket(sys_id, number, summary, priority, team))
        tx.put_link(pairs.jira("DS-7", "10007"), pairs.servicenow(ACTIVE_SYS_ID, "INC0010002"))
        tx.put_snapshot(
            "jira",
            "DS-7",
            {
                "ref": {"system": "jira", "id": "10007", "key": "DS-7", "url": "https://j/DS-7"},
                "summary": "Checkout fails for all EU customers",
                "status": "in_progress",
                "priority": "P1",
            },
        )
        tx.orm.add_all(
            [
                LedgerRow(
                    ticket_ref=f"servicenow:{ACTIVE_SYS_ID}",
                    state="approved",
                    level="L2",
                    assignee="lee@example.com",
                    requested_at=NOW - timedelta(hours=3),
                    requested_by="lee.l1",
                    reason="production down",
                    approved_at=NOW - timedelta(hours=2),
                    approved_by="sme.alice",
                    processed_command_ids=[],
                    engineering_ref="DS-7",
                    updated_at=NOW - timedelta(hours=2),
                ),
                LedgerRow(
                    ticket_ref=f"servicenow:{WAITING_SYS_ID}",
                    state="pending_approval",
                    level="L2",
                    assignee="sam@example.com",
                    requested_at=NOW - timedelta(minutes=50),
                    requested_by="lee.l1",
                    reason="billing run tonight",
                    processed_command_ids=[],
                    updated_at=NOW - timedelta(minutes=50),
                ),
                LedgerRow(
                    ticket_ref=f"servicenow:{REFUSED_SYS_ID}",
                    state="refused",
                    level="L2",
                    requested_at=NOW - timedelta(minutes=20),
                    requested_by="lee.l1",
                    processed_command_ids=[],
                    updated_at=NOW - timedelta(minutes=20),
                ),
            ]
        )
        tx.audit(
            "servicenow",
            ACTIVE_SYS_ID,
            "labels",
            [],
            ["ESCALATION"],
            reason="escalation approved by sme.alice (rule on_approval.tag)",
            at=NOW - timedelta(hours=2),
        )
        tx.audit("jira", "DS-7", "status", "new", "in_progress", reason="servicenow changed")
        rendered = RenderedEmail("[INC0010002] Escalated", "Your issue was escalated.", "<p/>")
        for event in ("escalated", "update"):
            enqueue(
                tx,
                OutboxKey("INC0010002", event, "1"),
                to=["carol@example.com"],
                rendered=rendered,
                id_domain="example.com",
                now=NOW,
            )
        tx.orm.execute(
            sa.update(OutboxRow)
            .where(OutboxRow.event == "update")
            .values(status=DEAD, last_error="InvalidAddress: 550 mailbox unavailable")
        )
    store.add_dead_letter(
        "servicenow",
        ACTIVE_SYS_ID,
        {"system": "servicenow", "ticket_id": ACTIVE_SYS_ID, "event": "updated"},
        "HTTP 400: Data policy: close notes are required",
        "WriteRefused",
    )
