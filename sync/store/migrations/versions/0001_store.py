"""The store: links, comment links, snapshots, watermarks, deliveries, audit, dead letters, locks.

Revision ID: 0001_store
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_store"
down_revision = None
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("jira_key", sa.String(64), nullable=False),
        sa.Column("jira_id", sa.String(64), nullable=True),
        sa.Column("servicenow_sys_id", sa.String(64), nullable=False),
        sa.Column("servicenow_number", sa.String(64), nullable=True),
        sa.Column("route", sa.String(200), nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_links"),
        sa.UniqueConstraint("jira_key", name="uq_links_jira_key"),
        sa.UniqueConstraint("servicenow_sys_id", name="uq_links_servicenow_sys_id"),
    )
    op.create_index("ix_links_jira_id", "links", ["jira_id"])
    op.create_index("ix_links_servicenow_number", "links", ["servicenow_number"])

    op.create_table(
        "comment_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_system", sa.String(32), nullable=False),
        sa.Column("source_ticket", sa.String(64), nullable=False),
        sa.Column("source_comment_id", sa.String(64), nullable=False),
        sa.Column("target_system", sa.String(32), nullable=False),
        sa.Column("target_ticket", sa.String(64), nullable=False),
        sa.Column("target_comment_id", sa.String(64), nullable=True),
        sa.Column("marker", sa.String(400), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_comment_links"),
        sa.UniqueConstraint(
            "source_system", "source_comment_id", name="uq_comment_links_source_system"
        ),
    )
    op.create_index(
        "ix_comment_links_target", "comment_links", ["target_system", "target_comment_id"]
    )

    op.create_table(
        "snapshots",
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        _when("synced_at"),
        sa.PrimaryKeyConstraint("system", "ticket_id", name="pk_snapshots"),
    )

    op.create_table(
        "watermarks",
        sa.Column("system", sa.String(32), nullable=False),
        _when("value", nullable=True),
        _when("polled_at", nullable=True),
        sa.PrimaryKeyConstraint("system", name="pk_watermarks"),
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(200), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        _when("received_at"),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("delivery_id", name="uq_deliveries_delivery_id"),
    )
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _when("at"),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("record", sa.String(64), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("from_value", sa.Text(), nullable=True),
        sa.Column("to_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_record", "audit_log", ["system", "record"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("ticket", sa.String(64), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error_class", sa.String(200), nullable=False),
        _when("created_at"),
        _when("replayed_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_created_at", "dead_letters", ["created_at"])

    op.create_table(
        "ticket_locks",
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        _when("acquired_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("system", "ticket_id", name="pk_ticket_locks"),
    )
    op.create_index("ix_ticket_locks_expires_at", "ticket_locks", ["expires_at"])


def downgrade() -> None:
    for table in (
        "ticket_locks",
        "dead_letters",
        "audit_log",
        "deliveries",
        "watermarks",
        "snapshots",
        "comment_links",
        "links",
    ):
        op.drop_table(table)
