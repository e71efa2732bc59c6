"""`webhook parse --system servicenow` on captured Business Rule posts."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.app import build

KEYS = {"system", "event", "ticket", "changed_fields", "comment_id", "author", "timestamp"}
POST = {
    "table": "incident",
    "sys_id": "c537bae64f411200adf9f8e18110c76e",
    "number": "INC0010002",
    "sys_mod_count": "3",
    "sys_updated_on": "2026-01-22 14:28:24",
    "sys_updated_by": "abel.tuter",
    "operation": "update",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_captured_post_prints_one_event(tmp_path: Path) -> None:
    """An old capture parses without its signature headers into the seven public keys."""
    capture = tmp_path / "post.json"
    capture.write_text(json.dumps(POST))
    code, out, _ = run("webhook", "parse", "--system", "servicenow", str(capture))
    assert code == 0
    [row] = [json.loads(line) for line in out.splitlines()]
    assert set(row) == KEYS
    assert row == {
        "system": "servicenow",
        "event": "incident_updated",
        "ticket": "c537bae64f411200adf9f8e18110c76e",
        "changed_fields": [],
        "comment_id": None,
        "author": "abel.tuter",
        "timestamp": "2026-01-22T14:28:24+00:00",
    }


def test_a_jira_body_is_refused_as_not_servicenow(tmp_path: Path) -> None:
    """A body of another shape exits 2 naming the file."""
    capture = tmp_path / "jira.json"
    capture.write_text(json.dumps({"webhookEvent": "jira:issue_updated"}))
    code, _, err = run("webhook", "parse", "--system", "servicenow", str(capture))
    assert code == 2
    assert "jira.json" in err and "not a servicenow webhook" in err
