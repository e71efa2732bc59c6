"""Customers' mail: each mail read from the replies mailbox, and the addresses that bounced; the
outbox's thread id is indexed (a reply that names only the thread is matched by it).

Revision ID: 0007_inbound_mail
Revises: 0006_pairs
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_inbound_mail"
down_revision = "0006_pairs"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "inbound_mails",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("ticket", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("subject", sa.String(300), nullable=True),
        _when("seen_at", nullable=False),
        _when("settled_at"),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_mails"),
        sa.UniqueConstraint("message_id", name="uq_inbound_mails_message_id"),
    )
    op.create_index(
        "ix_inbound_mails_sender_ticket", "inbound_mails", ["sender", "ticket", "seen_at"]
    )
    op.create_table(
        "mail_bounces",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("ticket", sa.String(128), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(300), nullable=True),
        _when("bounced_at", nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_mail_bounces"),
    )
    op.create_index("ix_outbox_thread", "outbox", ["thread"])


def downgrade() -> None:
    op.drop_index("ix_outbox_thread", table_name="outbox")
    op.drop_table("mail_bounces")
    op.drop_index("ix_inbound_mails_sender_ticket", table_name="inbound_mails")
    op.drop_table("inbound_mails")
