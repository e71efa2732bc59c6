"""The operations console in a real Chromium, against the running daemon and the simulators.

One estate (Jira, ServiceNow, mail sink) and one daemon with the console on serve the module:
an active escalation, one awaiting approval and an incomplete request are played through the
simulators as people would; a dead letter and a dead e-mail are then put in the store. The
browser signs in as the demo's operator and viewer. Each page is photographed into
build/screenshots/ (or the folder ESCALATION_SYNC_SCREENSHOTS names; the README shows two of the
copies kept in docs/screenshots/, taken with ESCALATION_SYNC_SCREENSHOTS=docs/screenshots).

Chromium is Debian's (`apt-get install chromium`, as `.ci/run` does); Playwright drives it and
never downloads a browser. Without either, the module is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli.demo_story import COMPLETE_DESCRIPTION, ConsoleSignIn, Story, Timeline, demo_config
from connectors.email_render import RenderedEmail
from simulators.estate import L1_ENGINEER, SECOND_SME, SME, SimulatedEstate
from sync.notify.outbox import DEAD, OutboxKey, OutboxRow, enqueue
from sync.runtime.daemon import Daemon

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
# A test run leaves the committed pictures alone unless asked to retake them.
SCREENSHOTS = ROOT / os.environ.get("ESCALATION_SYNC_SCREENSHOTS", "build/screenshots")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run does where it can)",
        allow_module_level=True,
    )


@dataclass
class Live:
    """The running estate and daemon, and what the story left in them."""

    estate: SimulatedEstate
    daemon: Daemon
    url: str
    sign_in: ConsoleSignIn
    active: str
    active_number: str
    waiting_number: str
    engineering_key: str
    dead_letter: int


def _shot(page: Any, name: str, *, full: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """Simulators, the daemon with its console, and a played story."""
    tmp = Path(tempfile.mkdtemp(prefix="console-e2e-"))
    with SimulatedEstate() as estate, pytest.MonkeyPatch.context() as env:
        for key, value in {
            **estate.environment(),
            "ESCALATION_SYNC_JIRA__BASE_URL": estate.jira.url,
            "ESCALATION_SYNC_SERVICENOW__INSTANCE_URL": estate.servicenow.url,
            "ESCALATION_SYNC_STATE__DIR": str(tmp / "state"),
            "ESCALATION_SYNC_WEBHOOKS__PORT": "0",
            "ESCALATION_SYNC_EMAIL__SMTP__PORT": str(estate.mail.smtp_port),
        }.items():
            env.setenv(key, value)
        sign_in = ConsoleSignIn()
        daemon = Daemon(demo_config(tmp, estate, sign_in))
        daemon.start()
        serving = threading.Thread(target=daemon.serve, daemon=True)
        serving.start()
        try:
            estate.point_webhooks_at(f"http://127.0.0.1:{daemon.port}")
            yield _play(estate, daemon, sign_in)
        finally:
            daemon.request_stop()
            serving.join(40)
            shutil.rmtree(tmp, ignore_errors=True)


def _play(estate: SimulatedEstate, daemon: Daemon, sign_in: ConsoleSignIn) -> Live:
    story = Story(estate, Timeline(echo=lambda _line: None))
    sn = estate.servicenow
    incomplete = story.incident(
        "Reports page is slow",
        "Customer says reports are slow.",
        impact="2",
        urgency="2",
        assignee=L1_ENGINEER.user_name,
    )
    story.work_note(incomplete, "/escalate customer unhappy", by=L1_ENGINEER.user_name)
    active = story.incident(
        "Checkout fails for all EU customers",
        COMPLETE_DESCRIPTION,
        impact="1",
        urgency="1",
        assignee=L1_ENGINEER.user_name,
    )
    sn.attach(active, "checkout.log", b"500 POST /pay\n" * 20, "text/plain", as_user="lee.l1")
    story.work_note(active, "/escalate production down for EU checkout", by="lee.l1")
    story.settle()
    story.work_note(active, "/approve-escalation engaging engineering", by=SME.user_name)
    assert story.wait("engineering record created", lambda: story.engineering_key() is not None)
    waiting = story.incident(
        "Invoices show the wrong total",
        COMPLETE_DESCRIPTION.replace("Checkout fails", "Invoice totals are wrong"),
        impact="2",
        urgency="1",
        assignee=SECOND_SME.user_name,
    )
    sn.attach(waiting, "invoice.txt", b"total mismatch\n", "text/plain", as_user="lee.l1")
    story.work_note(waiting, "/escalate billing run tonight", by=L1_ENGINEER.user_name)
    assert story.wait(
        "request awaits approval",
        lambda: any("Awaiting approval" in n for n in story.notes(waiting)),
    )
    story.settle()
    store = daemon.store
    assert store is not None and daemon.console is not None
    dead = store.add_dead_letter(
        "servicenow",
        active,
        {"system": "servicenow", "ticket_id": active, "event": "updated"},
        "HTTP 400: Data policy Resolve requires close notes: close_notes is mandatory",
        "WriteRefused",
    )
    number = sn.incident(active)["number"]
    with store.session() as tx:
        enqueue(
            tx,
            OutboxKey(number, "update", "console-e2e"),
            to=["carol@unreachable.example"],
            rendered=RenderedEmail(f"[{number}] Update", "An update.", "<p>An update.</p>"),
            id_domain="example.com",
            now=store.clock(),
        )
        tx.orm.execute(
            sa.update(OutboxRow)
            .where(OutboxRow.idempotency_key == f"{number}|update|console-e2e")
            .values(status=DEAD, last_error="InvalidAddress: 550 5.1.1 mailbox unavailable")
        )
    return Live(
        estate=estate,
        daemon=daemon,
        url=daemon.console.url,
        sign_in=sign_in,
        active=active,
        active_number=number,
        waiting_number=sn.incident(waiting)["number"],
        engineering_key=story.engineering_key() or "",
        dead_letter=dead,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        yield launched
        launched.close()


def _signed_in(browser: Any, live: Live, who: str, viewport: dict[str, int] = DESKTOP) -> Any:
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(live.url)
    assert "/sign-in" in page.url
    password = live.sign_in.operator_password if who == "operator" else live.sign_in.viewer_password
    page.fill("#username", who)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/board")
    return page


def test_sign_in_page(browser: Any, live: Live) -> None:
    """The sign-in page is what a stranger gets, and a wrong password is told plainly."""
    page = browser.new_page(viewport={"width": 900, "height": 620})
    page.goto(live.url + "board")
    assert page.locator("h1").inner_text() == "Sign in"
    page.fill("#username", "operator")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert "Wrong name or password" in page.locator(".flash").inner_text()
    _shot(page, "sign-in")
    page.context.close()


def test_board_shows_the_escalations(browser: Any, live: Live) -> None:
    """After sign-in the board lists the active escalation and the one awaiting approval."""
    page = _signed_in(browser, live, "operator")
    active = page.locator("#active-h + table")
    assert live.active_number in active.inner_text()
    assert live.engineering_key in active.inner_text()
    assert live.waiting_number in page.locator("#waiting-h + table").inner_text()
    assert "1 of 1" in page.locator(".limits").inner_text()
    _shot(page, "board")
    phone = _signed_in(browser, live, "viewer", PHONE)
    # At phone width the rows are cards: nothing is wider than the screen.
    _shot(phone, "board-phone")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    phone.context.close()
    page.context.close()


def test_ticket_page(browser: Any, live: Live) -> None:
    """The ticket page opens from the board with both records, the timeline and the trace."""
    page = _signed_in(browser, live, "operator")
    page.click(f"#active-h + table a.ticket:has-text('{live.active_number}')")
    page.wait_for_url(f"**/tickets/servicenow/{live.active}")
    assert live.active_number in page.locator("h1").inner_text()
    records = page.locator(".records").inner_text()
    assert live.engineering_key in records and "Escalated" in records
    assert page.locator(".timeline tbody tr").count() > 0
    # The decision trace loads in place (progressive enhancement).
    page.wait_for_selector("table.trace", timeout=15_000)
    trace = page.locator("#trace-h + .card").inner_text()
    assert "Would do next" in trace
    # The trace reads the escalation's chat room as the daemon does: the demo's Slack is known.
    assert "Slack" in records and "no chat notifier is configured" not in trace
    _shot(page, "ticket")
    page.context.close()
    phone = _signed_in(browser, live, "viewer", PHONE)
    phone.goto(f"{live.url}tickets/servicenow/{live.active}")
    phone.wait_for_selector("table.trace", timeout=15_000)
    _shot(phone, "ticket-phone")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.context.close()


def test_viewer_cannot_act(browser: Any, live: Live) -> None:
    """A viewer sees the dead letter without a Replay button, and a replay they send is refused."""
    page = _signed_in(browser, live, "viewer")
    page.goto(live.url + "health")
    row = page.locator(f"tr[data-dead-letter='{live.dead_letter}']")
    assert row.count() == 1 and row.locator("button").count() == 0
    token = page.locator("input[name=csrf_token]").first.input_value()
    answer = page.request.post(
        f"{live.url}dead-letters/{live.dead_letter}/replay",
        form={"csrf_token": token},
        headers={"origin": live.url.rstrip("/")},
        max_redirects=0,
    )
    assert answer.status == 403
    page.reload()
    assert page.locator(f"tr[data-dead-letter='{live.dead_letter}']").count() == 1
    page.context.close()


def test_forged_request_is_refused(browser: Any, live: Live) -> None:
    """A POST without the CSRF token is refused, from the page itself or from another site."""
    page = _signed_in(browser, live, "operator")
    page.goto(live.url + "health")
    status = page.evaluate(
        """url => fetch(url, {method: "POST", body: new URLSearchParams({}),
                 redirect: "manual"}).then(r => r.status)""",
        f"{live.url}dead-letters/{live.dead_letter}/replay",
    )
    assert status == 403
    # Another site's page posting a form at the console: the cookie stays home (SameSite) and
    # nothing is replayed.
    evil = page.context.new_page()
    evil.set_content(
        f"<form method=post action='{live.url}dead-letters/{live.dead_letter}/replay'>"
        "<button>win a prize</button></form>"
    )
    evil.click("button")
    evil.wait_for_load_state()
    assert "queued again" not in evil.content()
    page.reload()
    assert page.locator(f"tr[data-dead-letter='{live.dead_letter}']").count() == 1
    page.context.close()


def test_replay_a_dead_letter(browser: Any, live: Live) -> None:
    """An operator replays the dead letter from the health page and sees it leave the list."""
    page = _signed_in(browser, live, "operator")
    page.goto(live.url + "health")
    row = page.locator(f"tr[data-dead-letter='{live.dead_letter}']")
    assert "close notes" in row.inner_text()
    assert "InvalidAddress" in page.locator("#outbox").inner_text()
    _shot(page, "health")
    phone = _signed_in(browser, live, "viewer", PHONE)
    phone.goto(live.url + "health")
    _shot(phone, "health-phone")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.context.close()
    row.locator("button:has-text('Replay')").click()
    page.wait_for_selector(".flash-ok")
    assert "is queued again" in page.locator(".flash-ok").inner_text()
    assert page.locator(f"tr[data-dead-letter='{live.dead_letter}']").count() == 0
    store = live.daemon.store
    assert store is not None
    [audited] = [a for a in store.list_audit(record=live.active) if a.field == "dead letter"]
    assert audited.actor == "operator (operator, console)"
    page.context.close()


def test_configuration_what_if(browser: Any, live: Live) -> None:
    """The configuration page shows no secret and runs a what-if over the sample day."""
    page = _signed_in(browser, live, "operator")
    page.goto(live.url + "configuration")
    text = page.content()
    for secret in live.estate.environment().values():
        if len(secret) >= 8 and "://" not in secret:
            assert secret not in text
    page.check("input[name=sample]")
    page.fill("input[name=max_per_day]", "2")
    page.click("button:has-text('Run what-if')")
    page.wait_for_selector("#what-if-result")
    assert "Total" in page.locator("#what-if-result").inner_text()
    page.locator("#what-if-result").scroll_into_view_if_needed()
    _shot(page, "configuration")
    page.context.close()
