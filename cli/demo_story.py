"""The demo: simulators, SMTP sink and the daemon in one process, playing an escalation story.

Everything runs on free loopback ports with a temporary SQLite state. People act directly in the
simulators (as they would in the vendors' UIs); the simulators post signed webhooks to the daemon,
which does the rest. The story checks what it expects to see and says what did not happen.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import smtplib
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_string
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from types import FrameType
from typing import Any

from cli.simulators_cmd import people_lines
from escalation.wording import plural
from simulators.estate import (
    CREW_LEAD,
    CUSTOMER,
    L1_ENGINEER,
    MAIL_SINK_IMAP_PASSWORD,
    SECOND_SME,
    SME,
    SUPPORT_ADDRESS,
    SimulatedEstate,
)
from simulators.servicenow.schema import CHOICES
from sync.config.settings import EXAMPLE_CONFIG
from sync.pipeline.markers import find_marker, strip_marker

STEP_TIMEOUT = 20.0
COMPLETE_DESCRIPTION = (
    "Checkout fails with HTTP 500 for every EU customer since this morning.\n"
    "Steps to reproduce: log in as an EU customer, add any item to the cart, press Pay.\n"
    "Environment: production EU, version: 4.2.0.\n"
    "Troubleshooting done: cleared caches, restarted the checkout pods, reproduced in staging.\n"
    "Contact: Carol Customer, +44 20 7946 0000"
)


@dataclass
class Check:
    """One thing the story expects to have happened."""

    what: str
    passed: bool


@dataclass
class Timeline:
    """What happened, in order, with the second it happened at."""

    started: float = field(default_factory=time.monotonic)
    lines: list[tuple[float, str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    echo: Callable[[str], None] = print
    width: int = field(
        default_factory=lambda: min(max(shutil.get_terminal_size((100, 24)).columns, 60), 120)
    )

    def add(self, where: str, text: str) -> None:
        """One event; a text of several lines (a note) is shown in full, wrapped and indented
        under its first line."""
        moment = time.monotonic() - self.started
        self.lines.append((moment, where, text))
        head = f"  {moment:6.2f}s  {where:<11} "
        for n, line in enumerate(_wrapped(text, self.width - len(head))):
            self.echo((head if n == 0 else " " * len(head)) + line)

    def heading(self, text: str) -> None:
        self.echo(f"\n{text}")

    def check(self, what: str, passed: bool) -> None:
        self.checks.append(Check(what, passed))
        self.echo(f"  {'ok  ' if passed else 'FAIL'}     {what}")


def _body(message: Any) -> str:
    return str(message.text or "").replace("\r\n", "\n")


def _has_status(message: Any, status: str) -> bool:
    return re.search(rf"(?m)^Status:\s+{re.escape(status)}$", _body(message)) is not None


def _wrapped(text: str, width: int) -> list[str]:
    """Each non-blank line of `text` wrapped to `width`; continuations indented two spaces."""
    out: list[str] = []
    for line in text.strip().splitlines():
        if line.strip():
            out.extend(
                textwrap.wrap(
                    line.rstrip(),
                    width=max(width, 20),
                    subsequent_indent="  ",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
    return out


def _label(column: str, code: str | None) -> str:
    """A ServiceNow choice as the instance shows it (`In Progress`, `1 - Critical`)."""
    if not code:
        return "-"
    return CHOICES.get(column, {}).get(code, code)


def _note(text: str, *record: str) -> str:
    """A journal entry or comment without its origin marker, saying where a copy came from
    (a note we wrote about `record` itself, known by any of its ids, is no copy)."""
    marker = find_marker(text)
    body = strip_marker(text)
    if marker is None or marker.ticket in record:
        return body
    return f"(copy of {marker.system.value} {marker.ticket})\n{body}"


class Observer:
    """Turns the simulators' state into timeline lines: what changed since the last look."""

    def __init__(self, estate: SimulatedEstate, timeline: Timeline) -> None:
        self.estate = estate
        self.timeline = timeline
        self.journal_seen: set[str] = set()
        self.fields_seen: dict[str, tuple[str, str, str]] = {}
        self.jira_seen: dict[str, tuple[Any, ...]] = {}
        self.jira_comments_seen: set[str] = set()
        self.mail_seen = 0
        self.users = {v: k for k, v in estate.sn_users.items()}
        # The channels the workspace starts with are not news.
        self.channels_seen: dict[str, tuple[int, bool]] = {
            c["id"]: (len(estate.slack.members(c["id"])), c["is_archived"])
            for c in estate.slack.channels()
        }
        self.slack_seen: set[str] = set()

    def look(self) -> None:
        """Report every change since the previous look."""
        sn = self.estate.servicenow
        for incident in sn.incidents():
            sys_id, number = incident["sys_id"], incident["number"]
            current = (incident["state"], incident["priority"], incident.get("u_labels", ""))
            before = self.fields_seen.get(sys_id)
            if before is not None and before != current:
                changes = [
                    f"{name} {_label(name, old)} -> {_label(name, new)}"
                    for name, old, new in zip(
                        ("state", "priority", "labels"), before, current, strict=True
                    )
                    if old != new
                ]
                self.timeline.add("ServiceNow", f"{number}: {', '.join(changes)}")
            self.fields_seen[sys_id] = current
            for row in sn.journal(sys_id):
                if row["sys_id"] in self.journal_seen:
                    continue
                self.journal_seen.add(row["sys_id"])
                kind = "comment" if row["element"] == "comments" else "work note"
                self.timeline.add(
                    "ServiceNow",
                    f"{number}: {kind} by {row['sys_created_by']}: "
                    + _note(row["value"], number, sys_id),
                )
        jira = self.estate.jira
        for key in jira.keys():
            fields = jira.issue(key)["fields"]
            state = (
                fields["status"]["name"],
                (fields.get("priority") or {}).get("name"),
                tuple(fields.get("labels") or ()),
            )
            if key not in self.jira_seen:
                self.timeline.add(
                    "Jira",
                    f"{key} created: {fields['summary']!r} [{state[0]}, {state[1]}, "
                    f"labels {', '.join(state[2]) or '-'}]",
                )
            elif self.jira_seen[key] != state:
                self.timeline.add(
                    "Jira",
                    f"{key}: status {state[0]}, priority {state[1]}, "
                    f"labels {', '.join(state[2]) or '-'}",
                )
            self.jira_seen[key] = state
            for comment in (fields.get("comment") or {}).get("comments", []):
                if comment["id"] in self.jira_comments_seen:
                    continue
                self.jira_comments_seen.add(comment["id"])
                kind = "internal comment" if comment.get("visibility") else "comment"
                author = (comment.get("author") or {}).get("displayName", "?")
                self.timeline.add(
                    "Jira", f"{key}: {kind} by {author}: {_note(str(comment['body']), key)}"
                )
        messages = self.estate.mail.messages()
        for message in messages[self.mail_seen :]:
            to = ", ".join(message.rcpt_tos)
            self.timeline.add("Email", f"to {to}: {message.subject}")
        self.mail_seen = len(messages)
        self._look_at_slack()

    def _look_at_slack(self) -> None:
        slack = self.estate.slack
        users = slack.workspace.users
        for channel in slack.channels():
            cid, name = channel["id"], channel["name"]
            members = slack.members(cid)
            before = self.channels_seen.get(cid)
            if before is None:
                self.timeline.add("Slack", f"#{name} created: {channel['topic']['value']}")
                before = (1, False)
            if len(members) > before[0]:
                joined = [users[m].real_name for m in members[before[0] :] if m in users]
                self.timeline.add("Slack", f"#{name}: {', '.join(joined)} joined")
            for message in slack.messages(cid):
                if message.get("metadata") and message["ts"] not in self.slack_seen:
                    self.slack_seen.add(message["ts"])
                    text = message["text"].replace("&gt;", ">").replace("&lt;", "<")
                    self.timeline.add("Slack", f"#{name}: {text.replace('&amp;', '&')}")
            if channel["is_archived"] and not before[1]:
                self.timeline.add("Slack", f"#{name} archived")
            self.channels_seen[cid] = (max(len(members), before[0]), channel["is_archived"])


class Story:
    """The demo's actors and the waits between their actions."""

    def __init__(self, estate: SimulatedEstate, timeline: Timeline) -> None:
        self.estate = estate
        self.timeline = timeline
        self.observer = Observer(estate, timeline)

    # -- people acting ----------------------------------------------------------------------

    def incident(
        self, summary: str, description: str, *, impact: str, urgency: str, assignee: str
    ) -> str:
        sn = self.estate.servicenow
        record = sn.create_incident(
            {
                "short_description": summary,
                "description": description,
                "impact": impact,
                "urgency": urgency,
                "caller_id": self.estate.sn_users[CUSTOMER.user_name],
                "assigned_to": self.estate.sn_users[assignee],
                "category": "software",
            },
            as_user=L1_ENGINEER.user_name,
        )
        self.timeline.add(
            "ServiceNow",
            f"{record['number']} opened by {L1_ENGINEER.name}: {summary!r} "
            f"(priority {_label('priority', record['priority'])})",
        )
        self.observer.look()
        return str(record["sys_id"])

    def work_note(self, sys_id: str, text: str, *, by: str) -> None:
        self.estate.servicenow.add_work_note(sys_id, text, as_user=by)

    def public_comment(self, sys_id: str, text: str, *, by: str) -> None:
        self.estate.servicenow.add_comment(sys_id, text, as_user=by)

    # -- waiting and checking ---------------------------------------------------------------

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> bool:
        """Let the pipeline run until `predicate` holds; report changes as they appear."""
        deadline = time.monotonic() + timeout
        ok = False
        while time.monotonic() < deadline:
            self.observer.look()
            if predicate():
                ok = True
                break
            time.sleep(0.1)
        self.settle()
        self.timeline.check(what, ok or predicate())
        return ok

    def settle(self, quiet: float = 0.6, timeout: float = 10.0) -> None:
        """Wait until nothing has changed for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last = len(self.timeline.lines)
        calm_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            self.observer.look()
            if len(self.timeline.lines) != last:
                last = len(self.timeline.lines)
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return

    # -- reading ----------------------------------------------------------------------------

    def notes(self, sys_id: str, *, by: str | None = None, element: str | None = None) -> list[str]:
        rows = self.estate.servicenow.journal(sys_id)
        return [
            r["value"]
            for r in rows
            if (by is None or r["sys_created_by"] == by)
            and (element is None or r["element"] == element)
        ]

    def customer_replies(self, message: Any, words: str) -> None:
        """The customer answers `message` from their mail client: the words, a signature and
        the quoted history, sent to the support address through the sink's SMTP."""
        original = message_from_string(message.raw, policy=email_policy.default)
        reply = EmailMessage()
        reply["From"] = f"{CUSTOMER.name} <{CUSTOMER.email}>"
        reply["To"] = SUPPORT_ADDRESS
        reply["Subject"] = f"Re: {message.subject}"
        reply["Message-ID"] = make_msgid(domain="customer.example")
        reply["In-Reply-To"] = message.message_id
        reply["References"] = f"{original.get('References', '')} {message.message_id}".strip()
        quoted = "\n".join(f"> {line}" for line in (message.text or "").splitlines())
        reply.set_content(
            f"{words}\n\n-- \n{CUSTOMER.name}\n\nOn Monday, Example Support wrote:\n{quoted}\n",
            cte="quoted-printable",
        )
        with smtplib.SMTP("127.0.0.1", self.estate.mail.smtp_port, timeout=10) as smtp:
            smtp.sendmail(
                CUSTOMER.email, [SUPPORT_ADDRESS], reply.as_bytes(policy=email_policy.SMTP)
            )

    def emails_to(self, address: str) -> list[Any]:
        return [m for m in self.estate.mail.messages() if address in m.rcpt_tos]

    def channel(self, key: str) -> dict[str, Any] | None:
        """The Slack channel of the escalation whose DS issue is `key`."""
        prefix = f"ds-{key.rsplit('-', 1)[-1]}-"
        return next((c for c in self.estate.slack.channels() if c["name"].startswith(prefix)), None)

    def channel_people(self, key: str) -> set[str]:
        channel = self.channel(key)
        if channel is None:
            return set()
        users = self.estate.slack.workspace.users
        return {users[m].email or "" for m in self.estate.slack.members(channel["id"])}

    def channel_messages(self, key: str) -> list[str]:
        channel = self.channel(key)
        if channel is None:
            return []
        return [m["text"] for m in self.estate.slack.messages(channel["id"]) if m.get("metadata")]

    def channel_linked(self, key: str, sys_id: str) -> bool:
        channel = self.channel(key)
        if channel is None:
            return False
        link = f"/archives/{channel['id']}"
        fields = self.estate.jira.issue(key)["fields"]
        comments = (fields.get("comment") or {}).get("comments", [])
        in_jira = any(link in str(c.get("body")) for c in comments)
        return in_jira and any(link in n for n in self.notes(sys_id))

    def engineering_key(self) -> str | None:
        keys = [k for k in self.estate.jira.keys() if k.startswith("DS-")]
        return keys[0] if keys else None


def play(story: Story) -> None:
    """The story the README describes, step by step."""
    sn_bot = "escalation.sync"
    t = story.timeline
    sn = story.estate.servicenow
    carol = CUSTOMER.email

    t.heading("1. An escalation request on an incomplete ticket")
    a = story.incident(
        "Reports page is slow",
        "Customer says reports are slow.",
        impact="2",
        urgency="2",
        assignee=L1_ENGINEER.user_name,
    )
    story.work_note(a, "/escalate customer is unhappy with report speed", by=L1_ENGINEER.user_name)
    story.wait(
        "the incomplete request gets one internal note listing what is missing",
        lambda: any(
            "missing" in n.lower() for n in story.notes(a, by=sn_bot, element="work_notes")
        ),
    )
    t.check("nothing is escalated to Jira", story.engineering_key() is None)

    t.heading("2. A complete request, approved by an SME")
    b = story.incident(
        "Checkout fails for all EU customers",
        COMPLETE_DESCRIPTION,
        impact="1",
        urgency="1",
        assignee=L1_ENGINEER.user_name,
    )
    sn.attach(
        b,
        "checkout-errors.log",
        b"500 POST /pay cache key collision\n" * 40,
        "text/plain",
        as_user=L1_ENGINEER.user_name,
    )
    story.work_note(b, "/escalate production down for EU checkout", by=L1_ENGINEER.user_name)
    story.settle()
    story.public_comment(b, "/approve-escalation please hurry", by=CUSTOMER.user_name)
    story.settle()
    t.check(
        "a customer's public '/approve-escalation' approves nothing",
        story.engineering_key() is None,
    )
    story.work_note(
        b, "/approve-escalation reproduced in staging; engaging engineering", by=SME.user_name
    )
    story.wait(
        "the Jira engineering issue is created and linked",
        lambda: story.engineering_key() is not None,
    )
    key = story.engineering_key() or "?"
    if key != "?":
        story.wait(
            "the Jira issue is tagged ESCALATION",
            lambda: "ESCALATION" in (story.estate.jira.issue(key)["fields"].get("labels") or []),
        )
        story.wait(
            "the link to the Jira issue is posted in ServiceNow",
            lambda: any(key in n for n in story.notes(b)),
        )
        story.wait(
            "the escalation's Slack channel is made, named after the DS issue",
            lambda: story.channel(key) is not None,
        )
        story.wait(
            "the assignee, the approver and the crew lead are in the channel",
            lambda: {L1_ENGINEER.email, SME.email, CREW_LEAD.email} <= story.channel_people(key),
        )
        story.wait(
            "the channel's link is posted in the Jira issue and the incident",
            lambda: story.channel_linked(key, b),
        )
        story.wait(
            "the log file reaches the Jira issue",
            lambda: any(
                a["filename"] == "checkout-errors.log"
                for a in story.estate.jira.issue(key)["fields"].get("attachment") or []
            ),
        )
    story.wait(
        "the approval note (who, level, reason) is written back as a work note",
        lambda: any(
            SME.user_name in n or SME.name in n
            for n in story.notes(b, by=sn_bot, element="work_notes")
        ),
    )
    story.wait(
        "the customer is told the issue was escalated", lambda: len(story.emails_to(carol)) >= 1
    )
    story.wait(
        "management is told of the P1 escalation to L2, with who requested and who approved",
        lambda: any(
            "P1 escalation to L2" in (m.subject or "")
            and "Requested by:" in _body(m)
            and f"Approved by:  {SME.user_name}" in _body(m)
            for m in story.emails_to("support-managers@example.com")
        ),
    )

    t.heading("3. Engineering works in Jira")
    before = len(story.emails_to(carol))
    jira = story.estate.jira
    if key != "?":
        jira.transition(key, "In Progress")
        jira.comment(
            key, "Found it: a cache key collision since 4.2.0. A fix is being tested.", public=True
        )
        story.wait(
            "the engineer's public comment reaches the customer-visible ServiceNow comments",
            lambda: any("cache key collision" in n for n in story.notes(b, element="comments")),
        )
        story.wait("... and the customer by email", lambda: len(story.emails_to(carol)) > before)
        story.wait(
            "the channel is told engineering started",
            lambda: any("is now in progress" in t for t in story.channel_messages(key)),
        )
        after_public = len(story.emails_to(carol))
        jira.comment(
            key,
            "Internal: regression from the cache refactor (PR 4411), do not share.",
            public=False,
        )
        story.wait(
            "the internal comment arrives as a work note only",
            lambda: any("PR 4411" in n for n in story.notes(b, element="work_notes")),
        )
        t.check(
            "no email carries the internal comment",
            len(story.emails_to(carol)) == after_public
            and not any(
                "PR 4411" in (m.text or "") + (m.html or "") for m in story.estate.mail.messages()
            ),
        )

        t.heading("4. Engineering resolves the issue")
        jira.comment(key, "Fixed in 4.2.1, deployed to production EU.", public=True)
        jira.transition(key, "Done")
        story.wait(
            "the ServiceNow incident moves to Resolved", lambda: sn.incident(b)["state"] == "6"
        )
        story.wait(
            "the resolution is posted in the channel, which is archived",
            lambda: (
                any("Fixed in 4.2.1" in t for t in story.channel_messages(key))
                and bool((story.channel(key) or {}).get("is_archived"))
            ),
        )
        story.wait(
            "the customer is asked to confirm, quoting the fix, with the status Resolved",
            lambda: any(
                "confirm" in (m.subject or "").lower()
                and "Fixed in 4.2.1" in _body(m)
                and "cache key collision" not in _body(m)
                and _has_status(m, "Resolved")
                for m in story.emails_to(carol)
            ),
        )

        t.heading("5. The customer confirms the fix by e-mail")
        [confirm] = [m for m in story.emails_to(carol) if "confirm" in (m.subject or "").lower()]
        story.customer_replies(confirm, "Yes, it works again, thank you!")
        story.wait(
            "the reply lands on the incident as a public comment, quoted history cut",
            lambda: any(
                "Yes, it works again" in n and "By e-mail from" in n and "wrote:" not in n
                for n in story.notes(b, element="comments")
            ),
        )
        story.wait(
            "... is copied to the Jira issue",
            lambda: any(
                "Yes, it works again" in str(c.get("body"))
                for c in (jira.issue(key)["fields"].get("comment") or {}).get("comments", [])
            ),
        )
        story.wait(
            "... and closes the incident, as the policy's customer_replies says",
            lambda: sn.incident(b)["state"] == "7",
        )

    t.heading("6. A third request the same day meets the daily limit")
    c = story.incident(
        "Payment confirmation emails delayed",
        COMPLETE_DESCRIPTION.replace("Checkout fails", "Emails lag"),
        impact="2",
        urgency="1",
        assignee=SECOND_SME.user_name,
    )
    sn.attach(
        c, "mail-queue.txt", b"queue depth 5000\n", "text/plain", as_user=L1_ENGINEER.user_name
    )
    story.work_note(c, "/escalate confirmation emails delayed by hours", by=L1_ENGINEER.user_name)
    story.settle()
    story.work_note(c, "/approve-escalation needs engineering", by=SECOND_SME.user_name)
    story.wait(
        "the request is refused by the daily limit, with the count in the note",
        lambda: any(
            "limit" in n.lower() and "1" in n
            for n in story.notes(c, by=sn_bot, element="work_notes")
        ),
    )
    t.check(
        "no second Jira issue is created", len([k for k in jira.keys() if k.startswith("DS-")]) == 1
    )


@dataclass(frozen=True)
class ConsoleSignIn:
    """The demo's console accounts: made up for this run, shown once, gone with it."""

    operator_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    viewer_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))

    def toml(self) -> str:
        """The `[console]` section that turns the console on with these accounts."""
        from sync.console.auth import hash_password

        users = ", ".join(
            f'{{ name = "{name}", role = "{name}", password_hash = "{hash_password(secret)}" }}'
            for name, secret in (
                ("operator", self.operator_password),
                ("viewer", self.viewer_password),
            )
        )
        return f"\n[console]\nenabled = true\nport = 0\nusers = [{users}]\n"

    def line(self, url: str) -> str:
        """What `demo` prints: where the console is and how to sign in."""
        return (
            f"  {'console':<11} {url}  (sign in as operator / {self.operator_password}, "
            f"or viewer / {self.viewer_password} to read only)"
        )


def demo_config(
    state_dir: Path, estate: SimulatedEstate, console: ConsoleSignIn | None = None
) -> Path:
    """The example configuration pointed at the estate, allowing one escalation a day, reading
    customers' replies from the sink's IMAP, with the operations console on when `console` is
    given."""
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace("max_per_day = 3", "max_per_day = 1", 1)
    # Links posted into the records point at the simulators actually running.
    text = text.replace("http://127.0.0.1:8081/browse/", f"{estate.jira.url}/browse/")
    text = text.replace("http://127.0.0.1:8082/nav_to.do", f"{estate.servicenow.url}/nav_to.do")
    # Customers' replies are read back from the sink over IMAP (IDLE: at once).
    text += (
        f'\n[email.inbound]\nkind = "imap"\n[email.inbound.imap]\nhost = "127.0.0.1"\n'
        f'port = {estate.mail.imap_port}\nsecurity = "none"\nusername = "{SUPPORT_ADDRESS}"\n'
        f'password = "{MAIL_SINK_IMAP_PASSWORD}"\n'
    )
    text += _chat_toml(estate, state_dir)
    if console is not None:
        text += console.toml()
    path = state_dir / "demo.toml"
    path.write_text(text)
    return path


def _chat_toml(estate: SimulatedEstate, state_dir: Path) -> str:
    """The DS procedure's Slack channel, in the estate's workspace (the bot token in a file, as
    a container secret would be)."""
    token = state_dir / "slack-token"
    token.write_text(estate.slack.bot_token)
    token.chmod(0o600)
    people = (L1_ENGINEER, SME, SECOND_SME)
    # Journal authors are user names; the incident's assignee is a sys_user reference.
    names = [(p.user_name, p.email) for p in people]
    names += [
        (estate.sn_users[p.user_name], p.email) for p in people if p.user_name in estate.sn_users
    ]
    addresses = "\n".join(f'"{name}" = "{email}"' for name, email in names)
    return f"""
[notify.slack]
base_url = "{estate.slack.api_url}"
token_file = "{token}"

[escalation.chat]
enabled = true
channel = "ds-{{number}}-{{summary}}"
invite = ["assignee", "requester", "approver", "contact", "engineering_assignee"]
users = ["{CREW_LEAD.email}"]
events = ["approved", "level", "priority", "engineering_status", "resolved"]
archive = "resolved"

[escalation.chat.addresses]
{addresses}
"""


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_demo(*, keep_running: bool = False, echo: Callable[[str], None] = print) -> int:
    """Play the story; 0 when every check passed."""
    from sync.runtime.daemon import Daemon
    from sync.runtime.logs import configure_logging

    configure_logging(level="WARNING", json=False)
    timeline = Timeline(echo=echo)
    with (
        _sigterm_as_interrupt(),
        tempfile.TemporaryDirectory(prefix="escalation-sync-demo-") as tmp,
        SimulatedEstate() as estate,
    ):
        state_dir = Path(tmp)
        env = {
            **estate.environment(),
            "ESCALATION_SYNC_JIRA__BASE_URL": estate.jira.url,
            "ESCALATION_SYNC_SERVICENOW__INSTANCE_URL": estate.servicenow.url,
            "ESCALATION_SYNC_STATE__DIR": str(state_dir / "state"),
            "ESCALATION_SYNC_WEBHOOKS__PORT": "0",
            "ESCALATION_SYNC_EMAIL__SMTP__PORT": str(estate.mail.smtp_port),
        }
        sign_in = ConsoleSignIn()
        with _environment(env):
            daemon = Daemon(demo_config(state_dir, estate, sign_in))
            daemon.start()
            server = threading.Thread(target=daemon.serve, name="demo-daemon", daemon=True)
            server.start()
            try:
                urls = {**estate.urls(), "daemon": f"http://127.0.0.1:{daemon.port}"}
                estate.point_webhooks_at(urls["daemon"])
                console_line = sign_in.line(daemon.console.url) if daemon.console else None
                echo("escalation-sync demo: simulators, SMTP sink and daemon on loopback")
                _print_urls(urls, echo, estate.slack.bot_token, console_line)
                play(Story(estate, timeline))
                code = _summary(timeline, echo)
                if keep_running:
                    _stay_up(urls, estate, server, echo, console_line)
            finally:
                daemon.request_stop()
                server.join(40)
    return code


def _print_urls(
    urls: dict[str, str],
    echo: Callable[[str], None],
    slack_token: str,
    console_line: str | None = None,
) -> None:
    for name, url in urls.items():
        echo(f"  {name:<11} {url}")
    echo(f"  {'':<11} (Slack bot token {slack_token})")
    if console_line:
        echo(console_line)


def _summary(timeline: Timeline, echo: Callable[[str], None]) -> int:
    failed = [c for c in timeline.checks if not c.passed]
    took = time.monotonic() - timeline.started
    echo(
        f"\n{len(timeline.checks) - len(failed)} of {plural(len(timeline.checks), 'check')} "
        f"passed in {took:.1f}s."
    )
    return 1 if failed else 0


def _stay_up(
    urls: dict[str, str],
    estate: SimulatedEstate,
    server: threading.Thread,
    echo: Callable[[str], None],
    console_line: str | None = None,
) -> None:
    """Say where everything is, then wait for Ctrl-C or SIGTERM (or the daemon to end)."""
    try:
        echo("\nEverything stays up:")
        _print_urls(urls, echo, estate.slack.bot_token, console_line)
        echo("People to act as over the REST APIs (HTTP basic auth, login:secret):")
        for line in people_lines(estate.people(), indent="  "):
            echo(line)
        echo("Ctrl-C (or SIGTERM) stops it and removes the temporary state.")
        while server.is_alive():
            server.join(0.5)
    except KeyboardInterrupt:
        pass


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the daemon stops and the temporary state folder is
    removed (the default action would kill the process and leave the folder behind)."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
