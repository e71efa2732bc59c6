"""Fixtures for the console's tests: a valid configuration with the console on, its store."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.config.settings import EXAMPLE_CONFIG, Settings, load_settings
from sync.console.auth import hash_password
from sync.store.database import Store

OPERATOR = ("olga", "olga-operator-pass")
VIEWER = ("victor", "victor-viewer-pass")


@functools.cache
def _hash(password: str) -> str:
    # argon2 is slow on purpose; each password is hashed once per run.
    return hash_password(password)


def console_section(extra: str = "") -> str:
    """A `[console]` section with one operator and one viewer."""
    users = ",\n".join(
        f'  {{ name = "{name}", role = "{role}", password_hash = "{_hash(password)}" }}'
        for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer"))
    )
    return f"\n[console]\nenabled = true\nport = 0\n{extra}users = [\n{users}\n]\n"


def write_config(tmp_path: Path, section: str) -> Path:
    """The example configuration, state in `tmp_path`, with `section` appended."""
    text = EXAMPLE_CONFIG.read_text().replace('dir = "./state"', f'dir = "{tmp_path / "state"}"')
    path = tmp_path / "config.toml"
    path.write_text(text + section)
    return path


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Validated settings with the console enabled (secrets from the environment)."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "jira-token-never-shown")
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__EMAIL", "sync@example.com")
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__WEBHOOK_SECRET", "jira-hook-secret-never-shown")
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__USERNAME", "escalation.sync")
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__PASSWORD", "snow-password-never-shown")
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET", "snow-hook-never-shown")
    return load_settings(write_config(tmp_path, console_section()))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store."""
    opened = Store.for_state(tmp_path / "state")
    yield opened
    opened.close()
