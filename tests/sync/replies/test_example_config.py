"""The example configuration's commented replies blocks ([email.inbound] and the policy's
customer_replies), uncommented, are a valid configuration that says what the code does."""

from __future__ import annotations

from pathlib import Path

import pytest

from escalation.policy import CustomerReplies
from mapping.model import Status
from sync.config.settings import EXAMPLE_CONFIG, load_settings

BLOCKS = ("# [email.inbound]", "# [escalation.customer_replies]")


def uncommented(text: str) -> str:
    """The example with the replies blocks uncommented (their own comments kept)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith(BLOCKS):
            inside = True
        if inside and not line.startswith("#"):
            inside = False
        if inside and line.startswith("# ") and not line.startswith(("#  ", "# #")):
            line = line[2:]
        out.append(line)
    return "\n".join(out) + "\n"


def test_the_commented_replies_blocks_validate_and_match_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommented, the blocks load (the IMAP password from the variable they name) and the
    customer_replies values shown are the defaults."""
    monkeypatch.setenv("ESCALATION_SYNC_EMAIL__INBOUND__IMAP__PASSWORD", "sink")
    path = tmp_path / "config.toml"
    path.write_text(uncommented(EXAMPLE_CONFIG.read_text()))
    settings = load_settings(path)
    email = settings.email_settings
    assert email is not None and email.inbound is not None and email.inbound.imap is not None
    assert email.inbound.imap.password_value() == "sink"
    assert email.inbound.watcher_fields == ("custom_fields.watch_list",)
    assert settings.compiled_policy is not None
    replies = settings.compiled_policy.customer_replies
    assert replies == CustomerReplies()
    assert replies.confirmed.move_to is Status.CLOSED
    assert replies.not_fixed.engineering_move_to is Status.IN_PROGRESS
