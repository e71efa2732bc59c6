"""Alembic environment: runs on the connection handed in by `sync.store.migrations.upgrade`."""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

import sync.store.database  # noqa: F401  (declares the store's tables on Base)
from sync.store.db import Base

# The outbox, the ledger and the health board declare their tables on the same Base; import them
# when present so autogenerate comparisons see the complete schema.
for _name in ("sync.notify.outbox", "sync.procedure.ledger", "sync.runtime.health"):
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection, or open one from `sqlalchemy.url`."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
