"""`escalation-sync email ...` against the mail sink and a store in a temporary directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import build
from connectors.email_render import RenderedEmail
from simulators.mail import MailSink
from sync.notify.outbox import OutboxKey, enqueue
from sync.replies import store as mails
from sync.store.database import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


@pytest.fixture()
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture()
def config(tmp_path: Path, sink: MailSink) -> Path:
    text = EXAMPLE.read_text()
    text = re.sub(r'(?m)^dir = "\./state"', f'dir = "{tmp_path / "state"}"', text)
    smtp = text.index("[email.smtp]")
    text = text[:smtp] + re.sub(
        r"(?m)^port = 8025", f"port = {sink.smtp_port}", text[smtp:], count=1
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_renders_every_event(config: Path) -> None:
    """`email check` renders every event: seven customer mails, sixteen management notices."""
    code, out, err = run("email", "check", "--config", str(config))
    assert code == 0, err
    assert "OK: 23 email events render" in out


def test_test_message_reaches_the_sink(config: Path, sink: MailSink) -> None:
    """`email test --to` sends one message through the configured SMTP transport."""
    code, out, err = run("email", "test", "--to", "admin@example.org", "--config", str(config))
    assert code == 0, err
    [message] = sink.messages()
    assert message.rcpt_tos == ["admin@example.org"]
    assert message.subject == "[TEST] escalation-sync test message"
    assert message.message_id and message.message_id in out


def test_send_list_requeue(config: Path, sink: MailSink, tmp_path: Path) -> None:
    """`email send` flushes the outbox, `email outbox` lists rows, `requeue` revives a dead one."""
    store = Store.open(f"sqlite:///{tmp_path / 'state' / 'escalation-sync.store.db'}")
    rendered = RenderedEmail("[INC1] Closed: x", "closed\n", "<p>closed</p>")
    now = datetime.now(UTC)
    with store.session() as tx:
        for version, to in (("1", "customer@example.org"), ("2", "not an address")):
            enqueue(
                tx,
                OutboxKey("INC1", "closed", version),
                to=(to,),
                rendered=rendered,
                id_domain="example.com",
                now=now,
            )
    store.close()
    code, out, err = run("email", "send", "--config", str(config))
    assert code == 0, err
    assert "sent 1;" in out and "dead 1" in out
    assert len(sink.messages()) == 1
    code, out, _ = run("email", "outbox", "--status", "dead", "--config", str(config))
    assert code == 0 and "InvalidAddress" in out
    dead_id = re.search(r"│ (\d+)\s+│ INC1", out)
    assert dead_id is not None
    code, out, _ = run("email", "requeue", dead_id.group(1), "--config", str(config))
    assert code == 0 and "queued again" in out
    code, _, err = run("email", "resolve", dead_id.group(1), "--sent", "--config", str(config))
    assert code == 1 and "not in status unknown" in err


def test_replies_and_bounces_list_and_lift(config: Path, tmp_path: Path) -> None:
    """`email replies` lists the mails read; `email bounces` the stopped addresses, and
    `--clear` sends to one again (a second `--clear` says it is not stopped)."""
    store = Store.for_state(tmp_path / "state")
    now = datetime.now(UTC)
    try:
        with store.session() as tx:
            mails.record_mail(
                tx,
                message_id="<r1@customer.example>",
                sender="carla@customer.example",
                ticket="INC0010001",
                kind="reply",
                outcome=mails.PUBLIC_COMMENT,
                reason="customer reply matched by in_reply_to",
                subject="Re: [INC0010001] Escalated",
                now=now,
                settled=True,
            )
            mails.add_bounce(
                tx,
                address="gone@customer.example",
                ticket="INC0010002",
                status="5.1.1",
                diagnostic="550 no such user",
                message_id="<dsn@mx>",
                now=now,
            )
    finally:
        store.close()
    code, out, err = run("email", "replies", "--config", str(config))
    assert code == 0, err
    assert "carla@customer.example" in out and "public_comment" in out
    code, out, err = run("email", "bounces", "--config", str(config))
    assert code == 0, err
    assert "gone@customer.example" in out and "5.1.1" in out and "1 address stopped" in out
    code, out, err = run(
        "email", "bounces", "--clear", "gone@customer.example", "--config", str(config)
    )
    assert code == 0, err
    assert "sent again" in out
    code, _, err = run(
        "email", "bounces", "--clear", "gone@customer.example", "--config", str(config)
    )
    assert code == 1 and "not stopped" in err
