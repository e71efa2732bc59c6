"""The console's security list checked route by route: every action needs the CSRF token and
the operator role, sessions expire, cookies are removed as they were set, strangers cost no
query, forwarded headers count only from trusted proxies, and no secret reaches a log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from sync.config.settings import Settings
from sync.console.settings import ConsoleSettings
from sync.notify.outbox import DEAD, SENT, UNKNOWN, OutboxRow
from sync.store.database import Store
from tests.sync.console.conftest import OPERATOR, VIEWER
from tests.sync.console.harness import Harness, sign_in, token
from tests.sync.console.seed import ACTIVE_SYS_ID, seed

# Posting these needs no session: the sign-in form has its own token (double submit).
OPEN_POSTS = {"/sign-in"}


@pytest.fixture
def harness(settings: Settings, store: Store) -> Harness:
    """The console with one operator and one viewer, over the seeded store; one message is
    left unknown by a crash, one is dead."""
    seed(store)
    with store.session() as tx:
        tx.orm.execute(
            sa.update(OutboxRow).where(OutboxRow.event == "escalated").values(status=UNKNOWN)
        )
    return Harness(settings, store, settings.console)


def _client(harness: Harness, who: tuple[str, str]) -> TestClient:
    client = harness.client()
    assert sign_in(client, *who).status_code == 303
    return client


@pytest.fixture
def operator(harness: Harness) -> Iterator[TestClient]:
    """A client signed in as the operator."""
    with _client(harness, OPERATOR) as client:
        yield client


@pytest.fixture
def viewer(harness: Harness) -> Iterator[TestClient]:
    """A client signed in as the viewer."""
    with _client(harness, VIEWER) as client:
        yield client


def _message(harness: Harness, status: str) -> int:
    with harness.store.reading() as tx:
        found = tx.orm.scalar(sa.select(OutboxRow.id).where(OutboxRow.status == status))
    assert found is not None
    return int(found)


def _statuses(harness: Harness) -> dict[int, str]:
    with harness.store.reading() as tx:
        return {
            int(i): str(s) for i, s in tx.orm.execute(sa.select(OutboxRow.id, OutboxRow.status))
        }


def _actions(harness: Harness) -> list[str]:
    """Every POST route of the app, with real ids in place of its parameters."""
    [dead_letter] = harness.store.list_dead_letters()
    ids = {
        "/dead-letters/{item}/replay": dead_letter.id,
        "/outbox/{item}/requeue": _message(harness, DEAD),
        "/outbox/{item}/resolve": _message(harness, UNKNOWN),
    }
    return [
        route.path.replace("{item}", str(ids.get(route.path, 0)))
        for route in harness.app.routes
        if isinstance(route, Route)
        and "POST" in (route.methods or ())
        and route.path not in OPEN_POSTS
    ]


def _state(harness: Harness) -> tuple[Any, ...]:
    """What an action could change: the queue, dead letters, the outbox, the audit log."""
    return (
        list(harness.queued),
        harness.store.list_dead_letters(),
        _statuses(harness),
        harness.store.list_audit(limit=1000),
    )


def test_every_action_refuses_a_request_without_the_token(
    operator: TestClient, harness: Harness
) -> None:
    """Each POST route, present or added later, refuses a request without the session's CSRF
    token or from another site, and changes nothing."""
    actions = _actions(harness)
    assert {"/sign-out", "/configuration/what-if"} <= set(actions) and len(actions) >= 5
    good = token(operator.get("/health").text)
    before = _state(harness)
    for path in actions:
        for data, headers in (
            ({}, {}),
            ({"csrf_token": "forged"}, {}),
            ({"csrf_token": good}, {"origin": "https://evil.example"}),
        ):
            answer = operator.post(path, data={**data, "sent": "yes"}, headers=headers)
            assert answer.status_code == 403, (path, data, headers)
    assert _state(harness) == before
    assert operator.get("/board").status_code == 200  # sign-out was refused too


def test_a_viewer_can_do_no_action(viewer: TestClient, harness: Harness) -> None:
    """Replay, requeue and resolve sent by a viewer with a good token are refused."""
    good = token(viewer.get("/health").text)
    before = _state(harness)
    for path in _actions(harness):
        if path.startswith(("/dead-letters/", "/outbox/")):
            answer = viewer.post(path, data={"csrf_token": good, "sent": "yes"})
            assert answer.status_code == 403 and "only operators" in answer.text, path
    assert _state(harness) == before


def test_operator_resolves_a_message_left_unknown(operator: TestClient, harness: Harness) -> None:
    """ "It was sent" settles an unknown message as sent, audited with the operator's name."""
    unknown = _message(harness, UNKNOWN)
    answer = operator.post(
        f"/outbox/{unknown}/resolve",
        data={"csrf_token": token(operator.get("/health").text), "sent": "yes"},
    )
    assert answer.status_code == 303
    assert _statuses(harness)[unknown] == SENT
    [row] = harness.store.list_audit(record="INC0010002", limit=1)
    assert (row.from_value, row.to_value) == ("unknown", "sent")
    assert row.actor == "olga (operator, console)"
    assert "marked sent" in operator.get(answer.headers["location"]).text


def test_sessions_end_after_the_configured_idle_time(harness: Harness) -> None:
    """A session unused for longer than `session_idle_minutes` sends its browser to sign in;
    one in use ends at `session_max_hours` all the same."""
    harness.console_settings = harness.console_settings.model_copy(
        update={"session_idle_minutes": 10, "session_max_hours": 1}
    )
    with _client(harness, OPERATOR) as client:
        harness.seconds += 9 * 60
        assert client.get("/board").status_code == 200
        harness.seconds += 11 * 60
        assert client.get("/board").headers["location"].startswith("/sign-in")
    with _client(harness, OPERATOR) as client:
        for _ in range(6):
            harness.seconds += 9 * 60
            assert client.get("/board").status_code == 200
        harness.seconds += 9 * 60
        assert client.get("/board").status_code == 303


def test_sign_out_removes_the_cookie_as_it_was_set(harness: Harness) -> None:
    """Over https the session cookie is __Host- and Secure, and sign-out removes it with the
    same flags (a browser ignores the removal of a Secure cookie without them)."""
    harness.console_settings = harness.console_settings.model_copy(update={"cookie_secure": True})
    with harness.client(base_url="https://testserver") as client:
        assert sign_in(client, *OPERATOR).status_code == 303
        answer = client.post("/sign-out", data={"csrf_token": token(client.get("/board").text)})
    removal = answer.headers["set-cookie"]
    assert removal.startswith("__Host-escalation_console=")
    assert "Secure" in removal and "HttpOnly" in removal and "Max-Age=0" in removal


def test_a_stranger_costs_no_query(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages check the sign-in before they read anything."""
    read: list[str] = []
    readmodel = harness.console.readmodel
    for name in ("board", "ticket", "trace", "health", "configuration", "what_if"):
        monkeypatch.setattr(readmodel, name, lambda *a, _n=name, **k: read.append(_n))
    with harness.client() as client:
        for path in (
            "/board",
            "/health",
            "/configuration",
            "/find?q=INC0010002",
            f"/tickets/servicenow/{ACTIVE_SYS_ID}",
            f"/tickets/servicenow/{ACTIVE_SYS_ID}/trace",
        ):
            assert client.get(path).status_code == 303, path
    assert read == []


def test_forwarded_host_and_scheme_count_only_from_trusted_proxies(harness: Harness) -> None:
    """Behind a trusted proxy the origin check uses the host and scheme it forwards; the same
    headers from any other address do not make another site's origin ours."""
    harness.console_settings = harness.console_settings.model_copy(
        update={
            "trusted_proxies": ConsoleSettings.model_validate(
                {"trusted_proxies": ["10.0.0.0/8"]}
            ).trusted_proxies,
            "cookie_secure": False,
        }
    )
    forwarded = {
        "x-forwarded-host": "console.example",
        "x-forwarded-proto": "https",
        "origin": "https://console.example",
    }
    with harness.client(client=("10.1.1.1", 4000)) as proxied:
        assert sign_in(proxied, *OPERATOR).status_code == 303
        good = token(proxied.get("/health").text)
        what_if = proxied.post(
            "/configuration/what-if", data={"csrf_token": good, "sample": "1"}, headers=forwarded
        )
        assert what_if.status_code == 200
    with harness.client(client=("192.0.2.10", 4000)) as direct:
        assert sign_in(direct, *OPERATOR).status_code == 303
        good = token(direct.get("/health").text)
        refused = direct.post(
            "/configuration/what-if", data={"csrf_token": good, "sample": "1"}, headers=forwarded
        )
        assert refused.status_code == 403


def test_local_sign_in_ignores_the_proxy_header(harness: Harness) -> None:
    """With local users, a request naming someone in the proxy header is still a stranger."""
    with harness.client() as client:
        answer = client.get("/board", headers={"X-Forwarded-User": OPERATOR[0]})
        assert answer.status_code == 303


def test_a_password_typed_as_the_name_is_not_logged(harness: Harness) -> None:
    """A failed sign-in under a name nobody has logs a digest of the name, not the name."""
    with capture_logs() as logs, harness.client() as client:
        sign_in(client, OPERATOR[1], OPERATOR[1])
    [failed] = [e for e in logs if e.get("event") == "console sign-in failed"]
    assert failed["user"] is None and failed["unknown_name"]
    assert OPERATOR[1] not in repr(logs)


def test_the_trace_page_shows_no_secret(operator: TestClient) -> None:
    """The decision trace page (which reads the record from its system) shows no secret, also
    when it can only say why it could not be made."""
    html = operator.get(f"/tickets/servicenow/{ACTIVE_SYS_ID}/trace").text
    assert "could not be made" in html
    for secret in (
        "jira-token-never-shown",
        "jira-hook-secret-never-shown",
        "snow-password-never-shown",
        "snow-hook-never-shown",
    ):
        assert secret not in html
