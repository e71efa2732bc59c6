"""`webhook parse` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.app import build

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "vendor" / "jira" / "webhooks"
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


def test_non_webhook_file_exits_2(tmp_path: Path) -> None:
    """A file that is not a Jira webhook exits 2 and names the file and the reason."""
    bad = tmp_path / "incident.json"
    bad.write_text('{"sys_id": "abc"}')
    code, out, err = run("webhook", "parse", "--system", "jira", str(bad))
    assert code == 2
    assert out == ""
    assert "incident.json" in err and "not a jira webhook" in err


def test_unknown_system_exits_2(tmp_path: Path) -> None:
    """An unknown --system is refused with exit 2."""
    code, _, err = run("webhook", "parse", "--system", "zendesk", str(tmp_path))
    assert code == 2
    assert "unknown system" in err
