"""The connectors the product builds from its settings carry what the configuration says."""

from __future__ import annotations

from pathlib import Path

import pytest

from mapping.model import System
from sync.config.settings import load_settings
from sync.runtime.wiring import build_adapters
from sync.systems.servicenow.adapter import ServiceNowAdapter

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_servicenow_journal_fields_come_from_the_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`public_journal` / `internal_journal` name the fields comments and notes go to."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "t")
    monkeypatch.setenv("ESCALATION_SYNC_SERVICENOW__PASSWORD", "p")
    text = EXAMPLE.read_text().replace(
        'internal_journal = "work_notes"', 'internal_journal = "u_engineering_notes"'
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    adapter = build_adapters(load_settings(path))[System.SERVICENOW]
    assert isinstance(adapter, ServiceNowAdapter)
    assert adapter.connector.journal_fields == ("comments", "u_engineering_notes")
