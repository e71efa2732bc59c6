"""The outbox serves every notification channel: `email_outbox` becomes `outbox`.

Existing rows are e-mail (`channel = 'email'`, `kind = 'message'`); the key is unique per
channel; `in_reply_to` (always equal to `references`) becomes the channel-neutral `thread`;
`claimed_by` lets a worker take back a claim whose process is gone; `result_ref` keeps what the
transport called what it did (a created chat channel's id).

Revision ID: 0004_outbox_channels
Revises: 0003_ledger
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_outbox_channels"
down_revision = "0003_ledger"
branch_labels = None
depends_on = None

_OLD_INDEXES = ("ticket_ref", "status", "next_attempt_at")


def upgrade() -> None:
    for column in _OLD_INDEXES:
        op.drop_index(f"ix_email_outbox_{column}", table_name="email_outbox")
    op.rename_table("email_outbox", "outbox")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox RENAME CONSTRAINT pk_email_outbox TO pk_outbox")
    with op.batch_alter_table("outbox", recreate="auto") as batch:
        batch.add_column(
            sa.Column("channel", sa.String(32), nullable=False, server_default="email")
        )
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="message"))
        batch.add_column(sa.Column("extra", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("result_ref", sa.String(300), nullable=True))
        batch.alter_column("in_reply_to", new_column_name="thread")
        batch.drop_column("references")
        batch.drop_constraint("uq_email_outbox_idempotency_key", type_="unique")
        batch.drop_constraint("uq_email_outbox_message_id", type_="unique")
        batch.create_unique_constraint("uq_outbox_channel", ["channel", "idempotency_key"])
        batch.create_unique_constraint("uq_outbox_message_id", ["message_id"])
    for column in _OLD_INDEXES:
        op.create_index(f"ix_outbox_{column}", "outbox", [column])


def downgrade() -> None:
    # Rows of other channels have no place in the e-mail outbox.
    op.execute("DELETE FROM outbox WHERE channel <> 'email'")
    for column in _OLD_INDEXES:
        op.drop_index(f"ix_outbox_{column}", table_name="outbox")
    with op.batch_alter_table("outbox", recreate="auto") as batch:
        batch.drop_constraint("uq_outbox_channel", type_="unique")
        batch.drop_constraint("uq_outbox_message_id", type_="unique")
        batch.add_column(sa.Column("references", sa.Text(), nullable=True))
        batch.alter_column("thread", new_column_name="in_reply_to")
        batch.drop_column("result_ref")
        batch.drop_column("claimed_by")
        batch.drop_column("extra")
        batch.drop_column("kind")
        batch.drop_column("channel")
        batch.create_unique_constraint("uq_email_outbox_idempotency_key", ["idempotency_key"])
        batch.create_unique_constraint("uq_email_outbox_message_id", ["message_id"])
    op.execute('UPDATE outbox SET "references" = in_reply_to')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox RENAME CONSTRAINT pk_outbox TO pk_email_outbox")
    op.rename_table("outbox", "email_outbox")
    for column in _OLD_INDEXES:
        op.create_index(f"ix_email_outbox_{column}", "email_outbox", [column])
