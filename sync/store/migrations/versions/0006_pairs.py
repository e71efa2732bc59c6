"""Pairs of any two systems: each pair's records in `link_records`, (system, id, key) each.

`links` kept a Jira issue (`jira_key`, `jira_id`) and a ServiceNow record (`servicenow_sys_id`,
`servicenow_number`) per row. Each becomes a row of `link_records`: the system, the id the engine
addresses it by (`ticket_id`: the Jira key, the sys_id), the vendor's id and its key (the Jira
issue id and key; the sys_id and number). `links` keeps the pair's id, route and time, so the
pairs keep their ids (and their order).

Downgrading is possible while every pair is one Jira issue and one ServiceNow record.

Revision ID: 0006_pairs
Revises: 0005_system_health
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_pairs"
down_revision = "0005_system_health"
branch_labels = None
depends_on = None

# Each old side: system name, and the old columns holding its ticket id, vendor id and key.
OLD_SIDES = (
    ("jira", "jira_key", "jira_id", "jira_key"),
    ("servicenow", "servicenow_sys_id", "servicenow_sys_id", "servicenow_number"),
)


def upgrade() -> None:
    op.create_table(
        "link_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=True),
        sa.Column("record_key", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_link_records"),
        sa.UniqueConstraint("system", "ticket_id", name="uq_link_records_system"),
    )
    op.create_index("ix_link_records_link_id", "link_records", ["link_id"])
    op.create_index("ix_link_records_record_id", "link_records", ["system", "record_id"])
    op.create_index("ix_link_records_record_key", "link_records", ["system", "record_key"])
    # Jira sides first, then ServiceNow: within a pair the Jira record comes first, as the
    # old row named it.
    for system, ticket, ident, key in OLD_SIDES:
        op.execute(
            sa.text(
                "INSERT INTO link_records (link_id, system, ticket_id, record_id, record_key) "
                f"SELECT id, :system, {ticket}, {ident}, {key} FROM links ORDER BY id"
            ).bindparams(system=system)
        )
    op.drop_index("ix_links_jira_id", table_name="links")
    op.drop_index("ix_links_servicenow_number", table_name="links")
    with op.batch_alter_table("links") as batch:
        batch.drop_constraint("uq_links_jira_key", type_="unique")
        batch.drop_constraint("uq_links_servicenow_sys_id", type_="unique")
        for column in ("jira_key", "jira_id", "servicenow_sys_id", "servicenow_number"):
            batch.drop_column(column)


def downgrade() -> None:
    bind = op.get_bind()
    others = bind.execute(
        sa.text(
            "SELECT count(*) FROM links WHERE (SELECT count(*) FROM link_records r "
            "WHERE r.link_id = links.id AND r.system IN ('jira', 'servicenow')) <> 2 "
            "OR EXISTS (SELECT 1 FROM link_records r WHERE r.link_id = links.id "
            "AND r.system NOT IN ('jira', 'servicenow'))"
        )
    ).scalar()
    if others:
        raise RuntimeError(
            f"{others} pairs are not one Jira issue and one ServiceNow record: the schema "
            "before 0006_pairs cannot hold them"
        )
    with op.batch_alter_table("links") as batch:
        for column in ("jira_key", "jira_id", "servicenow_sys_id", "servicenow_number"):
            batch.add_column(sa.Column(column, sa.String(64), nullable=True))
    for system, ticket, ident, key in OLD_SIDES:
        # Where one old column holds two of the values, the ticket id is the one it keeps.
        sources = {key: "record_key", ident: "record_id", ticket: "ticket_id"}
        for column, source in sources.items():
            op.execute(
                sa.text(
                    f"UPDATE links SET {column} = (SELECT r.{source} FROM link_records r "
                    "WHERE r.link_id = links.id AND r.system = :system)"
                ).bindparams(system=system)
            )
    with op.batch_alter_table("links") as batch:
        batch.alter_column("jira_key", existing_type=sa.String(64), nullable=False)
        batch.alter_column("servicenow_sys_id", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_links_jira_key", ["jira_key"])
        batch.create_unique_constraint("uq_links_servicenow_sys_id", ["servicenow_sys_id"])
    op.create_index("ix_links_jira_id", "links", ["jira_id"])
    op.create_index("ix_links_servicenow_number", "links", ["servicenow_number"])
    op.drop_table("link_records")
