"""The console over HTTP: sign-in, roles, CSRF, cookies, headers, and no secret on any page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from sync.config.settings import Settings
from sync.console.settings import ConsoleSettings
from sync.store.database import Store
from tests.sync.console.conftest import OPERATOR, VIEWER
from tests.sync.console.harness import Harness, sign_in
from tests.sync.console.harness import token as _token
from tests.sync.console.seed import ACTIVE_SYS_ID, seed

SECRETS = (
    "jira-token-never-shown",
    "jira-hook-secret-never-shown",
    "snow-password-never-shown",
    "snow-hook-never-shown",
    OPERATOR[1],
    VIEWER[1],
    "$argon2",
)


@pytest.fixture
def harness(settings: Settings, store: Store) -> Harness:
    """The console with one operator and one viewer, over the seeded store."""
    seed(store)
    return Harness(settings, store, settings.console)


@pytest.fixture
def operator(harness: Harness) -> Iterator[TestClient]:
    """A client signed in as the operator."""
    with harness.client() as client:
        assert sign_in(client, *OPERATOR).status_code == 303
        yield client


@pytest.fixture
def viewer(harness: Harness) -> Iterator[TestClient]:
    """A client signed in as the viewer."""
    with harness.client() as client:
        assert sign_in(client, *VIEWER).status_code == 303
        yield client


def test_pages_need_a_sign_in(harness: Harness) -> None:
    """Every page sends a stranger to the sign-in form, remembering where they were going."""
    with harness.client() as client:
        for path in ("/board", "/health", "/configuration", f"/tickets/servicenow/{ACTIVE_SYS_ID}"):
            answer = client.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/sign-in?next=")


def test_sign_in_and_cookie_flags(harness: Harness) -> None:
    """A right password starts a session in an HttpOnly, SameSite cookie; a wrong one does not."""
    with harness.client() as client:
        wrong = sign_in(client, OPERATOR[0], "not-it")
        assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        right = sign_in(client, *OPERATOR)
        assert right.status_code == 303 and right.headers["location"] == "/board"
        cookie = right.headers["set-cookie"]
        assert "escalation_console=" in cookie and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie and "Secure" not in cookie
        assert client.get("/board").status_code == 200


def test_secure_cookie_when_configured(harness: Harness) -> None:
    """With cookie_secure the session cookie is Secure and carries the __Host- prefix."""
    harness.console_settings = harness.console_settings.model_copy(update={"cookie_secure": True})
    with harness.client(base_url="https://testserver") as client:
        answer = sign_in(client, *OPERATOR)
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("__Host-escalation_console=") and "Secure" in cookie


def test_sign_in_form_needs_its_token(harness: Harness) -> None:
    """A sign-in posted from elsewhere (no token from our form) is refused."""
    with harness.client() as client:
        answer = client.post("/sign-in", data={"username": OPERATOR[0], "password": OPERATOR[1]})
        assert answer.status_code == 403


def test_sign_in_is_throttled(harness: Harness) -> None:
    """After too many wrong passwords even the right one waits (429 with Retry-After)."""
    with harness.client() as client:
        for _ in range(harness.console_settings.max_sign_in_failures):
            assert sign_in(client, OPERATOR[0], "guess").status_code == 401
        answer = sign_in(client, *OPERATOR)
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0


def test_next_never_leaves_the_site(harness: Harness) -> None:
    """A `next` pointing at another site is ignored after sign-in."""
    with harness.client() as client:
        form = client.get("/sign-in?next=https://evil.example/x")
        answer = client.post(
            "/sign-in",
            data={
                "username": OPERATOR[0],
                "password": OPERATOR[1],
                "csrf_token": _token(form.text),
                "next": "//evil.example/x",
            },
        )
        assert answer.headers["location"] == "/board"


def test_security_headers(operator: TestClient) -> None:
    """Pages carry a strict CSP, refuse framing and are not cached."""
    answer = operator.get("/board")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"


def test_text_from_tickets_is_escaped(operator: TestClient) -> None:
    """A ticket summary with markup is shown as text."""
    html = operator.get("/board").text
    assert "&lt;b&gt;wrong&lt;/b&gt;" in html and "<b>wrong</b>" not in html


def test_no_secret_in_any_page_or_log(harness: Harness) -> None:
    """No page shows a secret, a password or a hash, and no log line carries one."""
    with capture_logs() as logs, harness.client() as client:
        sign_in(client, OPERATOR[0], "a-wrong-password")
        sign_in(client, *OPERATOR)
        pages = [
            client.get(path).text
            for path in (
                "/board",
                "/health",
                "/configuration",
                f"/tickets/servicenow/{ACTIVE_SYS_ID}",
                "/tickets/jira/DS-7",
            )
        ]
        session = client.cookies.get("escalation_console")
    logged = repr(logs)
    assert session
    for secret in (*SECRETS, "a-wrong-password", session):
        assert secret not in logged
        for html in pages:
            assert secret not in html
    assert any(e.get("event") == "console sign-in failed" for e in logs)


def test_operator_replays_a_dead_letter(operator: TestClient, harness: Harness) -> None:
    """Replay queues the event, marks the dead letter replayed and audits who did it."""
    health = operator.get("/health").text
    [item] = harness.store.list_dead_letters()
    assert f"/dead-letters/{item.id}/replay" in health
    answer = operator.post(
        f"/dead-letters/{item.id}/replay",
        data={"csrf_token": _token(health)},
        headers={"origin": "http://testserver"},
    )
    assert answer.status_code == 303
    assert harness.queued == [("servicenow", ACTIVE_SYS_ID, item.event)]
    assert harness.store.list_dead_letters() == []
    [row] = harness.store.list_audit(record=ACTIVE_SYS_ID, limit=1)
    assert row.field == "dead letter" and row.actor == "olga (operator, console)"
    after = operator.get(answer.headers["location"]).text
    assert "is queued again" in after and f"/dead-letters/{item.id}/replay" not in after


def test_operator_requeues_dead_mail(operator: TestClient, harness: Harness) -> None:
    """Requeue gives a dead message another set of attempts, audited with the operator."""
    health = operator.get("/health").text
    [dead] = [m for m in harness.console.readmodel.health().outbox if m.status == "dead"]
    answer = operator.post(f"/outbox/{dead.id}/requeue", data={"csrf_token": _token(health)})
    assert answer.status_code == 303
    statuses = {m.id: m.status for m in harness.console.readmodel.health().outbox}
    assert statuses[dead.id] == "pending"
    [row] = harness.store.list_audit(record="INC0010002", limit=1)
    assert row.system == "email" and row.actor == "olga (operator, console)"


def test_forged_requests_are_refused(operator: TestClient, harness: Harness) -> None:
    """Without the token, with another session's token, or from another origin: refused."""
    [item] = harness.store.list_dead_letters()
    token = _token(operator.get("/health").text)
    for data, headers in (
        ({}, {}),
        ({"csrf_token": "forged"}, {}),
        ({"csrf_token": token}, {"origin": "https://evil.example"}),
        ({"csrf_token": token}, {"sec-fetch-site": "cross-site"}),
    ):
        answer = operator.post(f"/dead-letters/{item.id}/replay", data=data, headers=headers)
        assert answer.status_code == 403, (data, headers)
    assert harness.queued == []
    assert len(harness.store.list_dead_letters()) == 1


def test_viewer_cannot_act(viewer: TestClient, harness: Harness) -> None:
    """A viewer sees no action buttons, and a well-formed action from them is refused."""
    health = viewer.get("/health").text
    assert "/replay" not in health and "/requeue" not in health
    [item] = harness.store.list_dead_letters()
    answer = viewer.post(f"/dead-letters/{item.id}/replay", data={"csrf_token": _token(health)})
    assert answer.status_code == 403 and "only operators" in answer.text
    assert harness.queued == [] and len(harness.store.list_dead_letters()) == 1


def test_sign_out_ends_the_session(operator: TestClient) -> None:
    """After signing out the old cookie opens nothing."""
    cookie = operator.cookies.get("escalation_console")
    token = _token(operator.get("/board").text)
    assert operator.post("/sign-out", data={"csrf_token": token}).status_code == 303
    operator.cookies.set("escalation_console", cookie or "")
    assert operator.get("/board").status_code == 303


def test_removed_user_is_signed_out(operator: TestClient, harness: Harness) -> None:
    """A reload that removes a person ends their session on their next click."""
    harness.console_settings = harness.console_settings.model_copy(
        update={"users": [u for u in harness.console_settings.users if u.name != OPERATOR[0]]}
    )
    assert operator.get("/board").status_code == 303


def test_what_if_form(operator: TestClient) -> None:
    """The what-if form runs the sample day through the policy in force."""
    token = _token(operator.get("/configuration").text)
    answer = operator.post(
        "/configuration/what-if", data={"csrf_token": token, "sample": "1", "max_per_day": "1"}
    )
    assert answer.status_code == 200
    assert 'id="what-if-result"' in answer.text and "Total" in answer.text


def test_proxy_sign_in(harness: Harness) -> None:
    """In proxy mode the header is believed from a trusted proxy only, and groups give roles."""
    harness.console_settings = harness.console_settings.model_copy(
        update={
            "auth": "proxy",
            "trusted_proxies": ConsoleSettings.model_validate(
                {"trusted_proxies": ["10.0.0.0/8"]}
            ).trusted_proxies,
            "operator_groups": ["sre"],
        }
    )
    headers = {"X-Forwarded-User": "pat", "X-Forwarded-Groups": "sre"}
    with harness.client(client=("10.1.1.1", 4000)) as trusted:
        page = trusted.get("/health", headers=headers)
        assert page.status_code == 200 and "/replay" in page.text
    with harness.client(client=("192.0.2.10", 4000)) as stranger:
        assert stranger.get("/health", headers=headers).status_code == 403
