"""Backends for the sync tests: SQLite always; PostgreSQL and Redis when their URLs are set.

Each PostgreSQL database handed out is a schema of its own (dropped afterwards), so concurrent
runs against one server never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from sync.store.database import Store

POSTGRES_ENV = "ESCALATION_SYNC_TEST_POSTGRES_URL"
REDIS_ENV = "ESCALATION_SYNC_TEST_REDIS_URL"


def postgres_url() -> str:
    """The PostgreSQL server to test against, or skip with the reason."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL store tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://...)")
    return url


def redis_url() -> str:
    """The Redis server to test against, or skip with the reason."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis queue tests need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/15)")
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped on exit."""
    base = postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def opened_store(backend: str, state_dir: Path) -> Iterator[Store]:
    """A migrated store, closed on exit: SQLite in `state_dir`, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        opened = Store.for_state(state_dir)
        try:
            yield opened
        finally:
            opened.close()
        return
    with postgres_schema() as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()
