"""Log redaction: configured secrets and auth headers never reach a log line."""

from __future__ import annotations

from sync.logs import REDACTED, Redactor


def test_secret_values_are_masked_anywhere() -> None:
    """A configured secret is masked inside strings, nested dicts and lists."""
    redact = Redactor(["s3cr3t-token"])
    event = redact(
        None,
        "info",
        {
            "event": "calling with s3cr3t-token",
            "ctx": {"url": "https://x?t=s3cr3t-token"},
            "l": ["s3cr3t-token"],
        },
    )
    assert "s3cr3t-token" not in repr(event)
    assert event["event"] == f"calling with {REDACTED}"


def test_auth_headers_are_masked_by_key() -> None:
    """Authorization and signature headers are masked whatever their value."""
    redact = Redactor()
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "headers": {"Authorization": "Basic abc", "X-Hub-Signature": "sha256=1", "Accept": "a"},
        },
    )
    assert event["headers"] == {
        "Authorization": REDACTED,
        "X-Hub-Signature": REDACTED,
        "Accept": "a",
    }


def test_short_values_are_not_treated_as_secrets() -> None:
    """Very short secrets are ignored rather than masking every occurrence of common letters."""
    assert Redactor(["ab"])(None, "info", {"event": "abc"})["event"] == "abc"


def test_bound_ticket_reaches_lines_of_every_module(capsys) -> None:
    """Context bound around a ticket (as the engine does) reaches any module's log line."""
    import json

    import structlog

    from sync.logs import configure_logging

    configure_logging(level="INFO", json=True)
    with structlog.contextvars.bound_contextvars(system="jira", ticket="DS-1"):
        structlog.get_logger("some.other.module").info("hello")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["system"], line["ticket"], line["event"]) == ("jira", "DS-1", "hello")
