"""A crash between posting a customer's reply and marking the mail posts it once: an injected
failure at that seam, and a real daemon killed there with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from imapclient import IMAPClient

from connectors.mailbox.imap import CLAIMED
from tests.e2e.conftest import CUSTOMER_EMAIL, EXAMPLE_CONFIG, ROOT, Harness, make_harness, wait_for
from tests.e2e.customer_mail import CUSTOMER_NAME, SUPPORT, send
from tests.e2e.kill_processors import MAIL_KILLED_MARK

pytestmark = pytest.mark.e2e

RUN = [sys.executable, str(ROOT / "run_sync.py"), "run"]
WORDS = "Exactly once, please: the export still times out."


class Killed(BaseException):
    """The process dies here: nothing after this line runs (not even `except Exception`)."""


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Simulators, the sink with IMAP, the store and the queue; no escalation policy."""
    h = make_harness(tmp_path, monkeypatch, replies=True)
    try:
        yield h
    finally:
        h.close()


def customer_writes(h: Harness, sys_id: str, words: str = WORDS) -> None:
    """The customer mails the support address about the incident, by its number."""
    number = h.servicenow.incident(sys_id)["number"]
    msg = EmailMessage()
    msg["From"] = f"{CUSTOMER_NAME} <{CUSTOMER_EMAIL}>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"[{number}] export"
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content(words)
    send(h, msg.as_bytes())


def copies(h: Harness, sys_id: str) -> int:
    return sum(WORDS in r["value"] for r in h.snow_journal(sys_id))


def jira_copies(h: Harness, key: str) -> int:
    return sum(WORDS in str(c.get("body")) for c in h.jira_comments(key))


def folder_flags(h: Harness, folder: str) -> list[set[bytes]]:
    """The flags of each mail in a folder of the support mailbox."""
    client = IMAPClient("127.0.0.1", port=h.mail.imap_port, ssl=False, timeout=10)
    try:
        client.login(SUPPORT, h.mail.imap_password)
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        return [set(d[b"FLAGS"]) for d in client.fetch(uids, ["FLAGS"]).values()]
    finally:
        client.logout()


def test_a_failure_right_after_posting_posts_once(harness: Harness) -> None:
    """The process dies right after the comment is written: the mail stays claimed, the next
    pass reads it as "maybe processed", finds the comment by its Message-ID, writes nothing
    more, and moves the mail to Processed."""
    h = harness
    sys_id, key = h.pair(short_description="Export times out")
    customer_writes(h, sys_id)

    def die(what: str) -> None:
        if what.startswith("mail comment"):
            raise Killed(what)

    h.engine.after_write = die
    with pytest.raises(Killed):
        h.read_replies()
    assert copies(h, sys_id) == 1
    assert [CLAIMED in flags for flags in folder_flags(h, "INBOX")] == [True]

    h.engine.after_write = lambda _what: None
    result = h.read_replies()
    assert (result.read, result.posted) == (1, 1)
    assert copies(h, sys_id) == 1
    assert jira_copies(h, key) == 1
    assert folder_flags(h, "INBOX") == []
    assert len(folder_flags(h, "Processed")) == 1
    again = h.read_replies()
    assert again.read == 0 and copies(h, sys_id) == 1


def _config(h: Harness, tmp_path: Path) -> Path:
    """The example configuration on the sink's SMTP, reading the support mailbox over IMAP."""
    text = EXAMPLE_CONFIG.read_text().replace("port = 8025", f"port = {h.mail.smtp_port}")
    text += (
        '\n[email.inbound]\nkind = "imap"\npoll_interval_seconds = 1\n'
        '[email.inbound.imap]\nhost = "127.0.0.1"\n'
        f'port = {h.mail.imap_port}\nsecurity = "none"\nusername = "{SUPPORT}"\n'
        f'password = "{h.mail.imap_password}"\n'
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _start(config: Path, log: Path, processor: str | None = None) -> subprocess.Popen[bytes]:
    command = [*RUN, "--config", str(config)]
    if processor is not None:
        command += ["--processor", processor]
    env = dict(os.environ)
    env["ESCALATION_SYNC_LOG_LEVEL"] = "INFO"
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_daemon_killed_after_posting_posts_once_after_restart(
    harness: Harness, tmp_path: Path
) -> None:
    """A real `run` reads the reply, posts it and is SIGKILLed before marking the mail; the
    restarted daemon finds the comment, posts nothing more, mirrors it to Jira once and moves
    the mail to Processed."""
    h = harness
    sys_id, key = h.pair(short_description="Export times out")
    config = _config(h, tmp_path)
    log = tmp_path / "daemon.log"
    state = Path(h.settings.state.dir)
    first = _start(config, log, "tests.e2e.kill_processors:kill_after_mail_comment")
    try:
        assert wait_for(lambda: (state / "daemon.json").exists(), timeout=60), log.read_text()
        customer_writes(h, sys_id)
        assert first.wait(60) == -signal.SIGKILL, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
    assert (state / MAIL_KILLED_MARK).exists()
    assert copies(h, sys_id) == 1
    assert [CLAIMED in flags for flags in folder_flags(h, "INBOX")] == [True]

    second = _start(config, log)
    try:
        moved = wait_for(lambda: len(folder_flags(h, "Processed")) == 1, timeout=60, step=0.2)
        assert moved, log.read_text()
        assert wait_for(lambda: jira_copies(h, key) == 1, timeout=60, step=0.2), log.read_text()
        assert copies(h, sys_id) == 1
        assert folder_flags(h, "INBOX") == []
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()
    assert copies(h, sys_id) == 1 and jira_copies(h, key) == 1
