"""Each system's health (last success, last error, failures in a row, its pause), and the
events held while a system is paused.

Revision ID: 0005_system_health
Revises: 0004_outbox_channels
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_system_health"
down_revision = "0004_outbox_channels"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "system_health",
        sa.Column("system", sa.String(64), nullable=False),
        _when("last_success_at"),
        _when("last_poll_success_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _when("last_error_at"),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        _when("failing_since"),
        _when("paused_at"),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("system", name="pk_system_health"),
    )
    op.create_table(
        "held_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("waiting_for", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("event", sa.JSON(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_held_events"),
        sa.UniqueConstraint(
            "waiting_for", "system", "ticket_id", name="uq_held_events_waiting_for"
        ),
    )


def downgrade() -> None:
    op.drop_table("held_events")
    op.drop_table("system_health")
