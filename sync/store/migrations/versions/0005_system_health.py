"""Each system's health: last success, last error, failures in a row, and its pause.

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


def downgrade() -> None:
    op.drop_table("system_health")
