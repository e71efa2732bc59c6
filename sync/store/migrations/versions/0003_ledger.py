"""The escalation ledger: one row per ticket, fingerprint sightings, and the slot lock row.

Revision ID: 0003_ledger
Revises: 0002_outbox
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ledger"
down_revision = "0002_outbox"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "escalation_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_ref", sa.String(200), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("level", sa.String(64), nullable=True),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        _when("requested_at"),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _when("approved_at"),
        sa.Column("approved_by", sa.String(400), nullable=True),
        _when("released_at"),
        sa.Column("processed_command_ids", sa.JSON(), nullable=False),
        sa.Column("notice_key", sa.String(400), nullable=True),
        sa.Column("engineering_ref", sa.String(200), nullable=True),
        _when("last_customer_update_at"),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_escalation_ledger"),
        sa.UniqueConstraint("ticket_ref", name="uq_escalation_ledger_ticket_ref"),
    )
    op.create_index("ix_escalation_ledger_assignee", "escalation_ledger", ["assignee"])
    op.create_index(
        "ix_escalation_ledger_active", "escalation_ledger", ["approved_at", "released_at"]
    )

    op.create_table(
        "escalation_fingerprints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("ticket_ref", sa.String(200), nullable=False),
        _when("seen_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_escalation_fingerprints"),
    )
    op.create_index(
        "ix_escalation_fingerprints_seen",
        "escalation_fingerprints",
        ["fingerprint", "seen_at"],
    )

    op.create_table(
        "escalation_slots",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_escalation_slots"),
    )


def downgrade() -> None:
    op.drop_table("escalation_slots")
    op.drop_index("ix_escalation_fingerprints_seen", table_name="escalation_fingerprints")
    op.drop_table("escalation_fingerprints")
    op.drop_index("ix_escalation_ledger_active", table_name="escalation_ledger")
    op.drop_index("ix_escalation_ledger_assignee", table_name="escalation_ledger")
    op.drop_table("escalation_ledger")
