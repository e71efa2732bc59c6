"""End-to-end harness: both simulators, the mail sink, a state store and the engine, in-process.

Everything listens on 127.0.0.1 on free ports and is stopped at teardown; the state (SQLite store
and Huey queue) lives in the test's tmp_path. Retries are shortened so faults cost milliseconds.

Fixtures
--------
`harness` (function scope) -> `Harness`, the one most tests need::

    def test_something(harness: Harness) -> None:
        sys_id, key = harness.pair(short_description="VPN down")   # a linked pair, in step
        harness.jira.comment(key, "fixed in 2.1", public=True)       # a person acts in Jira
        harness.drain()                                              # webhooks -> queue -> engine
        assert "fixed in 2.1" in harness.snow_journal_text(sys_id)

Its parts:
    harness.jira / harness.servicenow   the simulators (act as people, read state, /_sim stats)
    harness.mail                        the SMTP sink (harness.mail.messages())
    harness.settings                    the Settings the engine was built from
    harness.store, harness.queue        the state store and the Huey queue (SQLite, tmp_path)
    harness.engine                      the Engine (TicketProcessor) registered with the queue
    harness.webhooks_url                where the simulators post their webhooks (when the
                                        webhook server is installed), else None

Driving it:
    harness.drain()          deliver pending simulator webhooks, run every queued task (retries
                             included, without waiting for their delay), send the outbox; repeat
                             until nothing moves. Returns the number of tasks run.
    harness.read_replies()   one pass over the replies mailbox (with `replies=True`), then
                             drain(); returns the pass (sync.replies.intake.IntakePass).
    harness.poll()           one polling pass over both systems, then drain().
    harness.sync(system, id) process one ticket directly (no queue), returns the engine Outcome.
    harness.writes()         write requests (POST/PUT/PATCH/DELETE, searches excluded) both
                             simulators served since the last reset_stats().

Options: override the `harness_options` fixture in a test module (or call `make_harness`):
    escalation=False     run the configured escalation policy (preset stories: True)
    replies=False        True: the sink also serves IMAP, and `[email.inbound]` reads the
                         support address's mailbox there (`harness.read_replies()`)
    config=Path          another configuration file (a preset) instead of config.example.toml;
                         the connection, state and secret settings are overridden from the
                         environment, so any file that passes `mapping check` works
    echo_filter=False    True makes ServiceNow's Business Rule skip changes made by the
                         integration user, as installed in production; the default (False)
                         posts them too, so tests see our own writes come back (no-echo)

People and records seeded in ServiceNow: the agent `AGENT` (beth.anglin), the customer
`CUSTOMER` with `CUSTOMER_EMAIL` (caller of every `harness.incident()`), the integration user
`SNOW_USER`. Jira: project `DS` with every status of the example mapping reachable from any
status (`SYNC_WORKFLOW`); `harness.jira.engineer` acts as an engineer.

Time: `harness.engine.clock` is what the engine (and the outbox worker) take as now;
`harness.later(hours=5)` moves it, and `harness.tick()` runs the daemon's scheduler at that
moment, so time-driven rules (SLA near, follow-ups, reminders) fire on untouched tickets
without anyone waiting.

Crashes: `harness.engine.after_write = fn` is called after every vendor write and before it is
recorded; raising there simulates a worker killed at that point.

A test that wants other settings can build its own with `make_harness(tmp_path, ...)`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import presets
from connectors.mailbox.settings import InboundSettings
from connectors.retry import RetryPolicy
from mapping.model import System
from simulators.common import ServerThread
from simulators.estate import SUPPORT_WORKFLOW, add_routing_fields
from simulators.jira import JiraSimulator
from simulators.mail.sink import MailSink
from simulators.servicenow import ServiceNowSimulator
from sync.config.settings import Settings, load_settings
from sync.pipeline.engine import Engine, Outcome
from sync.procedure.scheduler import Scheduler
from sync.queue.tasks import RetrySchedule, SyncQueue, make_huey
from sync.runtime.wiring import build_engine
from sync.store.database import Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "config.example.toml"

JIRA_PROJECT = "DS"
JIRA_SECRET = "jira-webhook-secret"
SNOW_SECRET = "snow-webhook-secret"
SNOW_USER = "svc.sync"
SNOW_PASSWORD = "svc-sync-password"
AGENT = "beth.anglin"
CUSTOMER = "carla.customer"
CUSTOMER_EMAIL = "carla@customer.example"
# Waits are cut to milliseconds, Retry-After included (the simulators ask for a second).
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005, defer_after=3600)
FAST_QUEUE = RetrySchedule(attempts=6, base_delay=0.01, max_delay=0.05, lock_wait=0.01)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Reads sent as POST (JQL search with a body): not writes.
READ_POSTS = ("/search", "/batch")

# Every canonical status of the example mapping is a Jira status, reachable from anywhere.
SYNC_WORKFLOW = SUPPORT_WORKFLOW

# An incident description that passes the example policy's completeness gate.
COMPLETE_DESCRIPTION = (
    "Checkout fails with HTTP 500 for every EU customer since this morning.\n"
    "Steps to reproduce: log in as an EU customer, add any item to the cart, press Pay.\n"
    "Environment: production EU, version: 4.2.0.\n"
    "Troubleshooting done: cleared caches, restarted the checkout pods."
)


@dataclass
class Harness:
    """Both simulators, the mail sink, the store, the queue and the engine of one test."""

    jira: JiraSimulator
    servicenow: ServiceNowSimulator
    mail: MailSink
    settings: Settings
    store: Store
    queue: SyncQueue
    engine: Engine
    webhooks_url: str | None = None
    outbox: Any = None
    customer_sys_id: str = ""
    _stops: list[Callable[[], None]] = field(default_factory=list)

    # --- driving ---------------------------------------------------------------------------

    def wait_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until both simulators have posted every webhook they queued."""
        self.jira.drain_webhooks(timeout)
        self.servicenow.wait_for_webhooks(timeout)

    def run_queue(self) -> int:
        """Run every queued task now, scheduled retries included (their delay is skipped)."""
        # Huey keeps naive UTC times; a moment ahead makes every scheduled retry due now.
        ahead = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
        return self.queue.run_pending(limit=10_000, now=ahead)

    def drain(self, *, rounds: int = 30) -> int:
        """Webhooks -> queue -> engine -> outbox until nothing moves; returns the tasks run."""
        total = 0
        for _ in range(rounds):
            self.wait_webhooks()
            ran = self.run_queue()
            total += ran
            if self.outbox is not None:
                self.outbox.run_once()
            self.wait_webhooks()
            if ran == 0 and self.queue.depth() == 0:
                return total
        raise AssertionError(f"queue did not go idle after {rounds} rounds ({total} tasks)")

    def later(self, **delta: float) -> None:
        """From now on the engine (its scheduler and its outbox) act as if `delta` had passed
        since the real now (hours=5, minutes=30): time moves, nobody sleeps."""
        self.engine.clock = lambda: datetime.now(UTC) + timedelta(**delta)

    def tick(self) -> int:
        """One pass of the daemon's scheduler at the engine's clock: the tickets a time-driven
        rule is due for are queued (no edit to them), then drain(). Returns the tickets queued."""
        # Only what the decisions' wake times say is due: the daemon's backstop sweep of every
        # open escalation would hide a wake time that was never recorded.
        queued = Scheduler(
            self.store,
            lambda s, t: self.queue.enqueue_ticket(s, t, source="scheduler"),
            self.engine.clock,
            sweep_every=None,
        ).tick()
        self.drain()
        return queued

    def read_replies(self) -> Any:
        """One pass over the replies mailbox (customers' replies become comments), then
        drain() so the tickets they landed on are synced."""
        from sync.runtime.wiring import mail_intake

        intake = mail_intake(self.settings, self.engine, enqueue=self.queue.enqueuer("mail"))
        assert intake is not None, "make the harness with replies=True"
        try:
            result = intake.run_once()
        finally:
            intake.close()
        self.drain()
        return result

    def poll(self) -> int:
        """One polling pass over both systems (enqueueing what changed), then drain()."""
        for system in System:
            self.engine.poll(system.value)
        return self.drain()

    def sync(self, system: str, ticket: str) -> Outcome:
        """Process one ticket directly, outside the queue."""
        return self.engine.sync(system, ticket)

    # --- seeding ---------------------------------------------------------------------------

    def incident(self, **fields: Any) -> str:
        """Create an incident as the agent, the customer as caller; returns its sys_id."""
        values = {
            "short_description": "Checkout fails",
            "impact": "2",
            "urgency": "2",
            "caller_id": self.customer_sys_id,
            **fields,
        }
        return self.servicenow.create_incident(values, as_user=AGENT)["sys_id"]

    def pair(self, **fields: Any) -> tuple[str, str]:
        """A new incident and its Jira issue, linked and in step; returns (sys_id, key).

        Webhooks caused by the pairing are drained and the simulators' counters reset.
        """
        sys_id = self.incident(**fields)
        key = self.engine.create_pair(System.SERVICENOW.value, sys_id)
        self.drain()
        self.reset_stats()
        return sys_id, key

    # --- reading ---------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero both simulators' request counters."""
        self.jira.reset_stats()
        self.servicenow.faults.stats.reset()

    def writes(self, system: str | None = None) -> int:
        """Write requests served (faulted ones included) since the last reset_stats(); a batch
        counts as the writes it carried."""
        sims = {"jira": self.jira.stats(), "servicenow": self.servicenow.stats()}
        total = 0
        for name, stats in sims.items():
            if system is not None and name != system:
                continue
            routes = [*stats["requests"].items(), *stats.get("batched", {}).items()]
            for route, count in routes:
                method, _, path = route.partition(" ")
                if method not in WRITE_METHODS or path.startswith("/_sim/"):
                    continue
                if method == "POST" and any(part in path for part in READ_POSTS):
                    continue
                total += count
        return total

    def snow_journal(self, sys_id: str) -> list[dict[str, str]]:
        """The incident's comments and work notes, oldest first."""
        return self.servicenow.journal(sys_id)

    def snow_journal_text(self, sys_id: str) -> str:
        """Every journal entry's text, joined."""
        return "\n".join(r.get("value", "") for r in self.snow_journal(sys_id))

    def jira_comments(self, key: str) -> list[dict[str, Any]]:
        """The issue's comments as the integration user reads them."""
        fields = self.jira.issue(key)["fields"]
        block = fields.get("comment") or {}
        return list(block.get("comments") or [])

    def close(self) -> None:
        """Stop everything this harness started, newest first."""
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):  # teardown keeps going
                stop()
        self._stops.clear()


def _env(
    monkeypatch: pytest.MonkeyPatch,
    jira: JiraSimulator,
    snow: ServiceNowSimulator,
    mail: MailSink,
    state_dir: Path,
    jql: str,
) -> None:
    values = {
        "JIRA__BASE_URL": jira.url,
        "JIRA__AUTH": "cloud",
        "JIRA__EMAIL": jira.integration.email,
        "JIRA__API_TOKEN": "sim-api-token",
        "JIRA__PROJECT": JIRA_PROJECT,
        "JIRA__JQL": jql,
        "JIRA__WEBHOOK_SECRET": JIRA_SECRET,
        "JIRA__INTEGRATION_USER": jira.integration.account_id,
        "SERVICENOW__INSTANCE_URL": snow.url,
        "SERVICENOW__AUTH": "basic",
        "SERVICENOW__USERNAME": SNOW_USER,
        "SERVICENOW__PASSWORD": SNOW_PASSWORD,
        "SERVICENOW__WEBHOOK_SECRET": SNOW_SECRET,
        "SERVICENOW__INTEGRATION_USER": SNOW_USER,
        "STATE__DIR": str(state_dir),
        "WEBHOOKS__PORT": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"ESCALATION_SYNC_{name}", value)


def _email_overrides(settings: Settings, mail: MailSink, *, replies: bool = False) -> None:
    """Point the e-mail section at the sink (plain SMTP on loopback); with `replies`, read the
    support address's mailbox from the sink's IMAP."""
    email = getattr(settings, "email_settings", None)
    if email is None:
        return
    smtp = email.smtp.model_copy(
        update={"host": "127.0.0.1", "port": mail.smtp_port, "security": "none"}
    )
    update: dict[str, Any] = {"smtp": smtp}
    if replies:
        update["inbound"] = InboundSettings.model_validate(
            {
                "kind": "imap",
                "imap": {
                    "host": "127.0.0.1",
                    "port": mail.imap_port,
                    "security": "none",
                    "username": email.reply_to or email.from_address,
                    "password": mail.imap_password,
                    "timeout_seconds": 10,
                },
            }
        )
    settings.email_settings = email.model_copy(update=update)


def _start_webhook_server(harness: Harness) -> str | None:
    """Serve the product's webhook endpoints (sync/intake/webhooks.py) if installed."""
    try:
        from sync.intake import webhooks
    except ImportError:
        return None
    app = webhooks.create_app(
        store=harness.store,
        enqueue=harness.queue.enqueue_events,
        config=webhooks.WebhookConfig.from_settings(harness.settings),
        queue_depth=harness.queue.depth,
    )
    server = ServerThread(app).start()
    harness._stops.append(server.stop)
    return server.url


def make_harness(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    escalation: bool = False,
    config: Path = EXAMPLE_CONFIG,
    echo_filter: bool = False,
    jira_projects: tuple[str, ...] = (),
    replies: bool = False,
) -> Harness:
    """Start everything for one test; the caller must `close()` it (the fixture does).

    `jira_projects` are more Jira projects the configuration works in besides DS (a preset's
    escalation targets): created in the simulator, polled by the JQL, and covered by the
    webhook, as an admin sets them up.
    """
    stops: list[Callable[[], None]] = []
    jira = JiraSimulator(webhook_base_delay=0.01, webhook_attempts=3).start()
    stops.append(jira.stop)
    projects = tuple(dict.fromkeys((JIRA_PROJECT, *jira_projects)))
    jql = (
        f"project in ({', '.join(projects)})" if len(projects) > 1 else f"project = {JIRA_PROJECT}"
    )
    jira.add_project(JIRA_PROJECT, "Digital Support", workflow=SYNC_WORKFLOW)
    for key in projects[1:]:
        jira.add_project(key, f"{key} engineering", workflow=SYNC_WORKFLOW)
    add_routing_fields(jira)
    snow = ServiceNowSimulator().start()
    stops.append(snow.stop)
    # The example mapping's custom columns: tags, and what presets read (escalation type,
    # region, the account's sponsor).
    for column in ("u_labels", "u_escalation_type", "u_region", "u_sponsor"):
        snow.add_column("incident", column)
    # A fulfiller, not an admin: itil writes and resolves, itil_admin closes.
    snow.add_user(
        SNOW_USER, name="Escalation Sync", password=SNOW_PASSWORD, roles=("itil", "itil_admin")
    )
    snow.add_user(AGENT, name="Beth Anglin", email="beth.anglin@example.com", password="agent")
    customer = snow.add_user(CUSTOMER, name="Carla Customer", email=CUSTOMER_EMAIL)
    mail = MailSink(imap_port=0 if replies else None).start()
    stops.append(mail.stop)
    state_dir = tmp_path / "state"
    _env(monkeypatch, jira, snow, mail, state_dir, jql)
    settings = load_settings(config)
    _email_overrides(settings, mail, replies=replies)
    store = Store.for_state(settings.state.dir, settings.state.database_url)
    stops.append(store.close)
    queue = SyncQueue(make_huey(None, state_dir), store, retry=FAST_QUEUE)
    engine = build_engine(settings, store, retry=FAST_RETRY, enqueue=queue.enqueuer("poll"))
    if not escalation:
        engine.escalation = None
    queue.set_processor(engine)
    harness = Harness(jira, snow, mail, settings, store, queue, engine, _stops=stops)
    harness.customer_sys_id = customer["sys_id"]
    harness.outbox = _outbox_worker(harness)
    harness.webhooks_url = _start_webhook_server(harness)
    if harness.webhooks_url is not None:
        jira.register_webhook(
            f"{harness.webhooks_url}/webhooks/jira",
            secret=JIRA_SECRET,
            jql=jql,
        )
        snow.set_webhook(
            f"{harness.webhooks_url}/webhooks/servicenow",
            SNOW_SECRET,
            integration_user=SNOW_USER if echo_filter else None,
        )
    return harness


def preset_projects(name: str) -> tuple[str, ...]:
    """The Jira projects a preset escalates to."""
    policy = presets.load_preset(name)
    found = [p for lv in policy.levels for p in (lv.project, *lv.category_projects.values()) if p]
    return tuple(dict.fromkeys(found))


def preset_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **options: Any
) -> Harness:
    """A harness whose configuration points policy_file at the preset `name`, working in the
    Jira projects the preset escalates to (created, polled and covered by the webhook)."""
    config = tmp_path / "config.toml"
    config.write_text(f'policy_file = "{presets.preset_path(name)}"\n' + EXAMPLE_CONFIG.read_text())
    return make_harness(
        tmp_path,
        monkeypatch,
        escalation=True,
        config=config,
        jira_projects=preset_projects(name),
        **options,
    )


def _outbox_worker(harness: Harness) -> Any:
    """The outbox worker sending to the sink, when e-mail is configured."""
    email = getattr(harness.settings, "email_settings", None)
    if email is None:
        return None
    from sqlalchemy.orm import sessionmaker

    from connectors.email import build_sender
    from sync.notify.outbox import OutboxWorker
    from sync.replies import store as mails

    sessions = sessionmaker(harness.store.db, expire_on_commit=False)

    def session_factory() -> Any:
        return sessions()

    # The engine's clock, so a test that moves it on (cadence, approval windows) sends the
    # e-mails its decisions queue for that moment.
    return OutboxWorker(
        session_factory,
        build_sender(email),
        clock=lambda: harness.engine.clock(),
        base_delay=timedelta(0),
        suppressed=mails.suppressed,
    )


@pytest.fixture
def harness_options() -> dict[str, Any]:
    """Override in a test module to change how `harness` is built (see make_harness)."""
    return {}


@pytest.fixture
def harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harness_options: dict[str, Any]
) -> Iterator[Harness]:
    """A running harness (see the module docstring); stopped after the test."""
    h = make_harness(tmp_path, monkeypatch, **harness_options)
    try:
        yield h
    finally:
        h.close()


def step(h: Harness, sys_id: str) -> None:
    """Process the incident now, then let webhooks, the queue and the outbox settle."""
    h.sync("servicenow", sys_id)
    h.drain()


def work_notes(h: Harness, sys_id: str) -> list[str]:
    """The incident's work notes, oldest first."""
    return [r["value"] for r in h.snow_journal(sys_id) if r["element"] == "work_notes"]


def notes_with(h: Harness, sys_id: str, text: str) -> list[str]:
    """The incident's work notes that contain `text`."""
    return [n for n in work_notes(h, sys_id) if text in n]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


__all__ = [
    "EXAMPLE_CONFIG",
    "Harness",
    "make_harness",
    "notes_with",
    "preset_harness",
    "preset_projects",
    "step",
    "wait_for",
    "work_notes",
]
