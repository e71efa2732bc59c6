"""`webhook parse` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import build
from tests.conftest import VENDOR

CAPTURES = VENDOR / "jira" / "webhooks"
KEYS = {"system", "event", "ticket", "changed_fields", "comment_id", "author", "timestamp"}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_jira_captures_print_one_json_object_per_event() -> None:
    """Every Jira capture prints JSON lines carrying exactly the seven public keys."""
    files = sorted(str(p) for p in CAPTURES.glob("*.json"))
    code, out, _ = run("webhook", "parse", "--system", "jira", *files)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) >= len(files)
    assert all(set(row) == KEYS and row["system"] == "jira" for row in rows)


def test_single_capture_output() -> None:
    """A Server comment_created capture prints its issue id, comment id and author."""
    code, out, _ = run(
        "webhook",
        "parse",
        "--system",
        "jira",
        str(CAPTURES / "webhook-server-comment-created.json"),
    )
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["event"] == "comment_created"
    assert (row["ticket"], row["comment_id"], row["author"]) == ("10013", "10082", "levbrouk")
    assert row["timestamp"] == "2019-06-04T00:15:17.234000+00:00"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"sys_id": "abc"}', "not a jira webhook: no webhookEvent"),
        ('{"webhookEvent": "hello"}', "jira event 'hello' is not one escalation-sync handles"),
    ],
    ids=["not-a-webhook", "event-type-not-handled"],
)
def test_file_with_no_usable_event_exits_2(tmp_path: Path, body: str, reason: str) -> None:
    """A file that is not a Jira webhook, or is one of an event type the product does not act
    on, prints nothing on stdout and exits 2 naming the file and the reason."""
    capture = tmp_path / "capture.json"
    capture.write_text(body)
    code, out, err = run("webhook", "parse", "-s", "jira", str(capture))
    assert code == 2
    assert out == ""
    assert err.startswith(f"{capture}: {reason}")


def test_unknown_system_exits_2(tmp_path: Path) -> None:
    """An unknown -s is refused with exit 2, listing the systems to choose from."""
    code, _, err = run("webhook", "parse", "-s", "zendesk", str(tmp_path))
    assert code == 2
    assert "'zendesk' is not one of" in err and "'jira', 'servicenow'." in err
