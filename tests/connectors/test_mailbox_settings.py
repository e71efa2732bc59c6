"""`[email.inbound]`: loaded with the configuration, every error reported, no secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.email import EmailSettings
from connectors.mailbox import (
    EwsMailbox,
    GraphMailbox,
    ImapMailbox,
    InboundSettings,
    build_mailbox,
)
from mapping.errors import ConfigInvalid
from sync.config.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
IMAP = """
[email.inbound]
kind = "imap"
processed_folder = "INBOX/Processed"

[email.inbound.imap]
host = "imap.example.com"
username = "replies@example.com"
"""


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "c.toml"
    text = EXAMPLE.read_text()
    start = text.index("[email.smtp]")
    path.write_text(text[:start] + extra + "\n" + text[start:])
    return path


def test_inbound_section_with_the_password_from_the_environment(tmp_path, monkeypatch):
    """The section loads with the configuration; the password comes from the environment."""
    monkeypatch.setenv("ESCALATION_SYNC_EMAIL__INBOUND__IMAP__PASSWORD", "imap-secret-from-env")
    settings = load_settings(_config(tmp_path, IMAP))
    assert settings.email_settings is not None
    inbound = settings.email_settings.inbound
    assert isinstance(inbound, InboundSettings)
    assert inbound.imap is not None and inbound.imap.password_value() == "imap-secret-from-env"
    assert inbound.imap.effective_port == 993
    assert inbound.processed_folder == "INBOX/Processed"
    assert "imap-secret-from-env" not in repr(settings.email_settings)


def test_every_error_in_the_section_is_reported_together(tmp_path, monkeypatch):
    """Bad values in several keys come back in one report with their keys; no secret shown."""
    monkeypatch.setenv("ESCALATION_SYNC_EMAIL__INBOUND__IMAP__PASSWORD", "hunter2-imap")
    bad = IMAP.replace(
        'kind = "imap"', 'kind = "imap"\npoll_interval_seconds = 0\nstrnger_policy = "x"'
    )
    bad = bad.replace(
        'username = "replies@example.com"', 'username = "r@example.com"\nport = 99999'
    )
    with pytest.raises(ConfigInvalid) as info:
        load_settings(_config(tmp_path, bad))
    keys = {e.key for e in info.value.errors}
    assert "email.inbound.poll_interval_seconds" in keys
    assert "email.inbound.strnger_policy" in keys
    assert "email.inbound.imap.port" in keys
    assert "hunter2" not in str(info.value)


def test_subject_patterns_need_a_ticket_group_and_must_compile():
    """Each bad pattern is named with its reason."""
    with pytest.raises(ValidationError) as info:
        InboundSettings.model_validate(
            {
                "kind": "imap",
                "subject_patterns": ["(unclosed", r"INC[0-9]+", r"(?P<ticket>DS-\d+)"],
                "imap": {"host": "h", "username": "u", "password": "p"},
            }
        )
    text = str(info.value)
    assert "[0] '(unclosed'" in text and "[1] 'INC[0-9]+': needs a named group" in text
    assert "[2]" not in text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"kind": "graph"}, "needs an [email.inbound.graph] section"),
        ({"kind": "imap", "imap": {"host": "h", "username": "u"}}, "password or password_file"),
        (
            {
                "kind": "imap",
                "imap": {
                    "host": "mail.example.com",
                    "username": "u",
                    "password": "p",
                    "security": "none",
                },
            },
            "only allowed for a server on localhost",
        ),
        (
            {
                "kind": "imap",
                "processed_folder": "inbox",
                "imap": {"host": "h", "username": "u", "password": "p"},
            },
            "must differ from folder",
        ),
        (
            {
                "kind": "ews",
                "ews": {
                    "service_endpoint": "http://x/EWS",
                    "username": "u",
                    "password": "p",
                    "mailbox": "m@x.example",
                },
            },
            "https://",
        ),
    ],
)
def test_refused_sections(data, reason):
    """Sections that cannot work are refused at load time with the reason."""
    with pytest.raises(ValidationError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        InboundSettings.model_validate(data)


def test_secret_from_a_file(tmp_path):
    """password_file is read when the reader connects, and shows in no repr."""
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    settings = InboundSettings.model_validate(
        {"kind": "imap", "imap": {"host": "h", "username": "u", "password_file": str(secret)}}
    )
    assert settings.imap is not None and settings.imap.password_value() == "from-a-file"
    assert "from-a-file" not in repr(settings)


def test_absent_section_reads_no_mail():
    """Without [email.inbound] nothing is configured to read."""
    assert EmailSettings.model_validate({"from_address": "support@example.com"}).inbound is None


def test_build_mailbox_picks_the_kind():
    """The factory returns the reader of the configured kind."""
    imap = InboundSettings.model_validate(
        {"kind": "imap", "imap": {"host": "h", "username": "u", "password": "p"}}
    )
    graph = InboundSettings.model_validate(
        {
            "kind": "graph",
            "graph": {
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": "s",
                "mailbox": "m@x.example",
            },
        }
    )
    ews = InboundSettings.model_validate(
        {
            "kind": "ews",
            "ews": {
                "service_endpoint": "https://x.example/EWS/Exchange.asmx",
                "username": "u",
                "password": "p",
                "mailbox": "m@x.example",
            },
        }
    )
    assert isinstance(build_mailbox(imap), ImapMailbox)
    assert isinstance(build_mailbox(graph), GraphMailbox)
    assert isinstance(build_mailbox(ews), EwsMailbox)
