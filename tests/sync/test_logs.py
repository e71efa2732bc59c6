"""Log redaction: configured secrets and auth headers never reach a log line."""

from __future__ import annotations

from sync.runtime.logs import REDACTED, Redactor


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

    from sync.runtime.logs import configure_logging

    configure_logging(level="INFO", json=True)
    with structlog.contextvars.bound_contextvars(system="jira", ticket="DS-1"):
        structlog.get_logger("some.other.module").info("hello")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["system"], line["ticket"], line["event"]) == ("jira", "DS-1", "hello")


def test_library_log_lines_are_formatted_and_redacted(capsys) -> None:
    """A library's stdlib log line comes out as JSON with its logger name and no credentials."""
    import json
    import logging

    from sync.runtime.logs import configure_logging

    configure_logging(level="INFO", json=True, secrets=["lib-secret-9876"])
    logging.getLogger("urllib3.connectionpool").warning(
        "retrying with headers {'Authorization': 'Basic dXNlcjpwYXNz'} token lib-secret-9876"
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["logger"] == "urllib3.connectionpool" and line["level"] == "warning"
    assert "dXNlcjpwYXNz" not in line["event"] and "lib-secret-9876" not in line["event"]
    assert f"'Authorization': 'Basic {REDACTED}" in line["event"]


def test_credentials_written_into_text_are_masked() -> None:
    """Authorization and signature values inside a message are masked, the rest is kept."""
    redact = Redactor()
    text = "GET /x Authorization: Bearer abc.def X-Hub-Signature=sha256=00ff Accept: json"
    event = redact(None, "info", {"event": text})
    assert event["event"] == (
        f"GET /x Authorization: Bearer {REDACTED} X-Hub-Signature=sha256={REDACTED} Accept: json"
    )


def test_queue_and_smtp_sink_chatter_is_kept_for_debugging(capsys) -> None:
    """At INFO, Huey's per-task lines and aiosmtpd's per-step lines are not printed; at DEBUG
    they are, and their warnings always are."""
    import logging

    from sync.runtime.logs import configure_logging

    configure_logging(level="INFO", json=True)
    logging.getLogger("huey").info("Executing sync.queue.tasks.sync_ticket: 1")
    logging.getLogger("mail.log").info("('127.0.0.1', 4000) handling connection")
    logging.getLogger("huey").warning("task failed")
    err = capsys.readouterr().err
    assert "Executing" not in err and "handling connection" not in err
    assert "task failed" in err
    configure_logging(level="DEBUG", json=True)
    try:
        logging.getLogger("huey").info("Executing sync.queue.tasks.sync_ticket: 2")
        assert "Executing sync.queue.tasks.sync_ticket: 2" in capsys.readouterr().err
    finally:
        configure_logging(level="INFO", json=True)
