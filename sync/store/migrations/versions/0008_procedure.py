"""The procedure's memory: what the ledger keeps of each escalation, and every past decision.

The ledger keeps the escalation's priority (and a change waiting for an approver), the level a
waiting request asks for, the escalation a repeat joined, the ticket's key and category, and
when a time-driven rule next falls due (the scheduler's index). `escalation_decisions` keeps
each decision that did something, with its reasons, for `explain` and `report`.

Revision ID: 0008_procedure
Revises: 0007_inbound_mail
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_procedure"
down_revision = "0007_inbound_mail"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


LEDGER_COLUMNS = (
    ("priority", sa.String(8)),
    ("priority_asked", sa.String(8)),
    ("target_level", sa.String(64)),
    ("joined_to", sa.String(200)),
    ("ticket_key", sa.String(200)),
    ("category", sa.String(200)),
)


def upgrade() -> None:
    with op.batch_alter_table("escalation_ledger") as batch:
        for name, kind in LEDGER_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.add_column(_when("wake_at"))
        batch.create_index("ix_escalation_ledger_wake_at", ["wake_at"])
        batch.create_index("ix_escalation_ledger_joined_to", ["joined_to"])

    op.create_table(
        "escalation_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_ref", sa.String(200), nullable=False),
        sa.Column("ticket_key", sa.String(200), nullable=True),
        _when("at", nullable=False),
        sa.Column("state_before", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("level", sa.String(64), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("approved_by", sa.String(400), nullable=True),
        sa.Column("category", sa.String(200), nullable=True),
        sa.Column("request_started", sa.Boolean(), nullable=False),
        sa.Column("activated", sa.Boolean(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_escalation_decisions"),
    )
    op.create_index("ix_escalation_decisions_ticket", "escalation_decisions", ["ticket_ref", "at"])
    op.create_index("ix_escalation_decisions_at", "escalation_decisions", ["at"])


def downgrade() -> None:
    op.drop_index("ix_escalation_decisions_at", table_name="escalation_decisions")
    op.drop_index("ix_escalation_decisions_ticket", table_name="escalation_decisions")
    op.drop_table("escalation_decisions")
    with op.batch_alter_table("escalation_ledger") as batch:
        batch.drop_index("ix_escalation_ledger_joined_to")
        batch.drop_index("ix_escalation_ledger_wake_at")
        batch.drop_column("wake_at")
        for name, _ in reversed(LEDGER_COLUMNS):
            batch.drop_column(name)
