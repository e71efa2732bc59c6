"""The SMTP sink: a real SMTP server whose messages are listed over HTTP."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from simulators.mail import MailSink

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


def _message(subject: str = "Hello", to: str = "customer@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Support <support@example.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.lower()}@example.com>"
    msg.set_content("plain body\n")
    msg.add_alternative("<p>html body</p>\n", subtype="html")
    return msg


def _send(sink: MailSink, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as smtp:
        smtp.send_message(msg)


def test_messages_listed_with_headers_and_both_parts(sink: MailSink) -> None:
    """A message sent over SMTP is listed by GET /messages with headers, text and HTML parts."""
    _send(sink, _message())
    listed = requests.get(f"{sink.api_url}/messages", timeout=5).json()
    assert len(listed) == 1
    got = listed[0]
    assert got["subject"] == "Hello"
    assert got["message_id"] == "<hello@example.com>"
    assert got["mail_from"] == "support@example.com"
    assert got["rcpt_tos"] == ["customer@example.org"]
    assert ["To", "customer@example.org"] in got["headers"]
    assert got["text"] == "plain body\n"
    assert got["html"] == "<p>html body</p>\n"
    assert requests.get(f"{sink.api_url}/messages/{got['id']}", timeout=5).json() == got


def test_filters_and_delete(sink: MailSink) -> None:
    """Messages can be filtered by Message-ID and recipient, and DELETE /messages clears them."""
    _send(sink, _message("One", "a@example.org"))
    _send(sink, _message("Two", "b@example.org"))
    by_id = requests.get(
        f"{sink.api_url}/messages", params={"message_id": "<two@example.com>"}, timeout=5
    ).json()
    assert [m["subject"] for m in by_id] == ["Two"]
    by_to = requests.get(f"{sink.api_url}/messages", params={"to": "A@example.org"}, timeout=5)
    assert [m["subject"] for m in by_to.json()] == ["One"]
    assert requests.delete(f"{sink.api_url}/messages", timeout=5).ok
    assert requests.get(f"{sink.api_url}/messages", timeout=5).json() == []
    assert sink.messages() == []


def test_refused_recipient(sink: MailSink) -> None:
    """POST /refusals makes the sink answer RCPT TO with the configured permanent code."""
    requests.post(
        f"{sink.api_url}/refusals", json={"address": "gone@example.org", "code": 550}, timeout=5
    ).raise_for_status()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        _send(sink, _message(to="gone@example.org"))
    assert info.value.recipients["gone@example.org"][0] == 550
    requests.delete(f"{sink.api_url}/refusals", timeout=5).raise_for_status()
    _send(sink, _message(to="gone@example.org"))
    assert len(sink.messages()) == 1


def test_two_sinks_bind_distinct_free_ports() -> None:
    """Port 0 gives each sink its own free SMTP and HTTP port, released on stop."""
    with MailSink() as first, MailSink() as second:
        assert first.smtp_port != second.smtp_port
        assert first.api_url != second.api_url
        port = first.smtp_port
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(1)
        probe.connect(("127.0.0.1", port))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_module_entry_point_serves_until_terminated() -> None:
    """`python -m simulators.mail --smtp-port P --api-port Q` serves SMTP and HTTP until SIGTERM."""
    smtp_port, api_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "simulators.mail", "--smtp-port", str(smtp_port)]
    command.extend(["--api-port", str(api_port)])
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{api_port}/messages", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "sink did not start"
                time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(_message("Cli"))
        listed = requests.get(f"http://127.0.0.1:{api_port}/messages", timeout=5).json()
        assert [m["subject"] for m in listed] == ["Cli"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
