"""Alembic migrations of the state store, run from code (there is no alembic.ini).

Revisions live in `versions/`, one chain: 0001_store -> 0002_outbox -> 0003_ledger ->
0004_outbox_channels -> 0005_system_health -> 0006_pairs -> 0007_inbound_mail ->
0008_procedure -> ...
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration pointing at this package (and at `url` when given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    if url is not None:
        # ConfigParser interpolation would eat a "%" in a password.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Any constant shared by every process of this product: serialises concurrent upgrades.
PG_MIGRATION_LOCK = 0x65736373  # "escs"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind `engine` to `revision` (default: the newest).

    Several processes may start at once (a daemon and a cron `sync --once`): on PostgreSQL an
    advisory lock makes the second wait and then find nothing to do; SQLite's BEGIN IMMEDIATE
    does the same.
    """
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Step the database behind `engine` back to `revision` ("base" removes every table)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
