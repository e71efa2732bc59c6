"""Microsoft Graph transport: msal client credentials and sendMail, faked with `responses`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.email import (
    GRAPH_ID_PROPERTY,
    EmailSettings,
    GraphSender,
    GraphSettings,
    Identity,
    InvalidAddress,
    OutgoingEmail,
    build_sender,
    make_message_id,
    thread_root_id,
)
from connectors.errors import AuthFailed, RateLimited, ServerUnavailable
from connectors.retry import RetryPolicy

TENANT = "11111111-2222-3333-4444-555555555555"
LOGIN = f"https://login.microsoftonline.com/{TENANT}"
SEND_URL = "https://graph.microsoft.com/v1.0/users/support@example.com/sendMail"
SENT_ITEMS = (
    "https://graph.microsoft.com/v1.0/users/support@example.com/mailFolders/sentitems/messages"
)
IDENTITY = Identity("support@example.com", "Acme Support", reply_to="help@example.com")


@pytest.fixture()
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def _settings(**extra: object) -> GraphSettings:
    return GraphSettings(
        tenant_id=TENANT,
        client_id="app-client-id",
        client_secret="app-secret-value",  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def _email() -> OutgoingEmail:
    root = thread_root_id("INC0010001", "example.com")
    return OutgoingEmail(
        to=("customer@example.org",),
        subject="[INC0010001] Update on your request",
        text="Plain part\n",
        html="<p>HTML part</p>\n",
        message_id=make_message_id("INC0010001|public_update|3", "example.com"),
        in_reply_to=root,
        references=(root,),
        headers=(("X-Escalation-Sync-Ticket", "INC0010001"),),
    )


def _register_login(mock: responses.RequestsMock) -> None:
    mock.get(
        f"{LOGIN}/v2.0/.well-known/openid-configuration",
        json={
            "token_endpoint": f"{LOGIN}/oauth2/v2.0/token",
            "authorization_endpoint": f"{LOGIN}/oauth2/v2.0/authorize",
            "issuer": f"{LOGIN}/v2.0",
        },
    )
    mock.post(
        f"{LOGIN}/oauth2/v2.0/token",
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token-1"},
    )


def _sender(sleeps: list[float] | None = None, **extra: object) -> GraphSender:
    policy_ = RetryPolicy(attempts=3, base_delay=0.01, max_delay=60, sleep=(sleeps or []).append)
    if sleeps is not None:
        policy_ = RetryPolicy(attempts=3, base_delay=0.01, max_delay=60, sleep=sleeps.append)
    return GraphSender(_settings(**extra), IDENTITY, session=requests.Session(), retry=policy_)


def test_token_then_sendmail_in_documented_json_shape(mock: responses.RequestsMock) -> None:
    """Client-credentials token from the tenant, then sendMail with the documented JSON body."""
    _register_login(mock)
    mock.post(SEND_URL, status=202)
    sender = _sender(format="json")
    message = _email()
    assert sender.send(message) == message.message_id
    assert sender.send(message) == message.message_id  # the token is reused from msal's cache

    token_calls = [c for c in mock.calls if str(c.request.url).endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1
    form = parse_qs(str(token_calls[0].request.body))
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_id"] == ["app-client-id"]
    assert form["scope"] == ["https://graph.microsoft.com/.default"]
    assert form["client_secret"] == ["app-secret-value"]

    send = next(c for c in mock.calls if c.request.url == SEND_URL).request
    assert send.headers["Authorization"] == "Bearer graph-token-1"
    assert send.headers["Content-Type"] == "application/json"
    body = json.loads(send.body or b"")
    assert body == {
        "message": {
            "subject": "[INC0010001] Update on your request",
            "body": {"contentType": "HTML", "content": "<p>HTML part</p>\n"},
            "toRecipients": [{"emailAddress": {"address": "customer@example.org"}}],
            "from": {"emailAddress": {"address": "support@example.com", "name": "Acme Support"}},
            "replyTo": [{"emailAddress": {"address": "help@example.com"}}],
            "internetMessageId": message.message_id,
            "singleValueExtendedProperties": [
                {"id": GRAPH_ID_PROPERTY, "value": message.message_id}
            ],
            "internetMessageHeaders": [{"name": "X-Escalation-Sync-Ticket", "value": "INC0010001"}],
        },
        "saveToSentItems": True,
    }


@pytest.mark.parametrize("extra", [{}, {"format": "mime"}], ids=["default", "mime"])
def test_mime_format_keeps_thread_headers(
    mock: responses.RequestsMock, extra: dict[str, str]
) -> None:
    """MIME, the default, posts base64 MIME as text/plain, keeping both parts and threading."""
    mock.post(SEND_URL, status=202)
    sender = GraphSender(
        _settings(**extra), IDENTITY, session=requests.Session(), token=lambda: "t"
    )
    sender.send(_email())
    request = mock.calls[0].request
    assert request.headers["Content-Type"] == "text/plain"
    parsed = message_from_bytes(base64.b64decode(request.body or b""), policy=policy.default)
    assert parsed["Message-ID"] == _email().message_id
    assert parsed["In-Reply-To"] == thread_root_id("INC0010001", "example.com")
    assert parsed["References"] == thread_root_id("INC0010001", "example.com")
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == "Plain part\n"
    assert html.get_content().replace("\r\n", "\n") == "<p>HTML part</p>\n"


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_honours_retry_after(mock: responses.RequestsMock, status: int) -> None:
    """A 429 or 503 with Retry-After waits the time Graph asked for, then sends."""
    mock.post(SEND_URL, status=status, headers={"Retry-After": "7"}, json={"error": {"code": "x"}})
    mock.post(SEND_URL, status=202)
    sleeps: list[float] = []
    sender = GraphSender(
        _settings(),
        IDENTITY,
        session=requests.Session(),
        token=lambda: "t",
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=60, sleep=sleeps.append),
    )
    sender.send(_email())
    assert sleeps == [7.0]
    assert len(mock.calls) == 2


def test_throttling_that_persists_is_handed_to_the_outbox(mock: responses.RequestsMock) -> None:
    """After the attempts run out the RateLimited error carries Retry-After for the outbox."""
    for _ in range(3):
        mock.post(
            SEND_URL,
            status=429,
            headers={"Retry-After": "30"},
            json={"error": {"code": "ApplicationThrottled", "message": "Too many requests"}},
        )
    sleeps: list[float] = []
    sender = GraphSender(
        _settings(),
        IDENTITY,
        session=requests.Session(),
        token=lambda: "t",
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=60, sleep=sleeps.append),
    )
    with pytest.raises(RateLimited) as info:
        sender.send(_email())
    assert info.value.retry_after == 30.0
    assert sleeps == [30.0, 30.0]


def test_503_without_retry_after_backs_off(mock: responses.RequestsMock) -> None:
    """A 503 without Retry-After is retried with backoff and ends as ServerUnavailable."""
    for _ in range(2):
        mock.post(SEND_URL, status=503, body="<html>Service Unavailable</html>")
    sleeps: list[float] = []
    sender = GraphSender(
        _settings(),
        IDENTITY,
        session=requests.Session(),
        token=lambda: "t",
        retry=RetryPolicy(attempts=2, base_delay=0.5, max_delay=60, sleep=sleeps.append),
    )
    with pytest.raises(ServerUnavailable):
        sender.send(_email())
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5


def test_invalid_recipient_is_permanent(mock: responses.RequestsMock) -> None:
    """Graph's ErrorInvalidRecipients is an InvalidAddress, not retried."""
    mock.post(
        SEND_URL,
        status=400,
        json={
            "error": {
                "code": "ErrorInvalidRecipients",
                "message": "At least one recipient is not valid.",
            }
        },
    )
    sender = GraphSender(_settings(), IDENTITY, session=requests.Session(), token=lambda: "t")
    with pytest.raises(InvalidAddress, match="ErrorInvalidRecipients"):
        sender.send(_email())
    assert len(mock.calls) == 1


def test_refused_client_secret_is_auth_failure(mock: responses.RequestsMock) -> None:
    """A refused client secret is AuthFailed, and the secret is not in the error text."""
    mock.get(
        f"{LOGIN}/v2.0/.well-known/openid-configuration",
        json={
            "token_endpoint": f"{LOGIN}/oauth2/v2.0/token",
            "authorization_endpoint": f"{LOGIN}/oauth2/v2.0/authorize",
            "issuer": f"{LOGIN}/v2.0",
        },
    )
    mock.post(
        f"{LOGIN}/oauth2/v2.0/token",
        status=401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret.",
        },
    )
    with pytest.raises(AuthFailed, match="invalid_client") as info:
        _sender().send(_email())
    assert "app-secret-value" not in str(info.value)


def test_forbidden_mailbox_is_auth_failure(mock: responses.RequestsMock) -> None:
    """403 from sendMail (no Mail.Send permission) is AuthFailed."""
    mock.post(
        SEND_URL,
        status=403,
        json={"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}},
    )
    sender = GraphSender(_settings(), IDENTITY, session=requests.Session(), token=lambda: "t")
    with pytest.raises(AuthFailed):
        sender.send(_email())


@pytest.mark.parametrize(("value", "expected"), [([{"id": "AAMk1"}], True), ([], False)])
def test_sent_items_lookup_by_extended_property(
    mock: responses.RequestsMock, value: list[dict[str, str]], expected: bool
) -> None:
    """JSON format: was_sent filters Sent Items on the extended property carrying the id."""
    mock.get(SENT_ITEMS, json={"value": value})
    sender = GraphSender(
        _settings(format="json"), IDENTITY, session=requests.Session(), token=lambda: "t"
    )
    assert sender.was_sent("<abc@example.com>") is expected
    query = parse_qs(urlsplit(str(mock.calls[0].request.url)).query)
    assert query["$filter"] == [
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{GRAPH_ID_PROPERTY}' "
        "and ep/value eq '<abc@example.com>')"
    ]
    assert query["$select"] == ["id"]


def test_sent_items_lookup_by_internet_message_id_for_mime(
    mock: responses.RequestsMock,
) -> None:
    """MIME format: was_sent filters Sent Items on internetMessageId."""
    mock.get(SENT_ITEMS, json={"value": [{"id": "AAMk1"}]})
    sender = GraphSender(
        _settings(format="mime"), IDENTITY, session=requests.Session(), token=lambda: "t"
    )
    assert sender.was_sent("<abc@example.com>") is True
    query = parse_qs(urlsplit(str(mock.calls[0].request.url)).query)
    assert query["$filter"] == ["internetMessageId eq '<abc@example.com>'"]


def test_lookup_unavailable_without_sent_copies() -> None:
    """JSON format with saveToSentItems off: the transport cannot tell what went out."""
    sender = GraphSender(
        _settings(format="json", save_to_sent_items=False),
        IDENTITY,
        session=requests.Session(),
        token=lambda: "t",
    )
    assert sender.was_sent("<abc@example.com>") is None


def test_mime_messages_are_looked_up_even_without_the_setting(
    mock: responses.RequestsMock,
) -> None:
    """Graph keeps every MIME message in Sent Items, so was_sent can still answer."""
    mock.get(SENT_ITEMS, json={"value": []})
    sender = GraphSender(
        _settings(save_to_sent_items=False), IDENTITY, session=requests.Session(), token=lambda: "t"
    )
    assert sender.was_sent("<abc@example.com>") is False


def test_build_sender_uses_the_callers_session(mock: responses.RequestsMock) -> None:
    """build_sender returns the Graph transport bound to the session it was given."""
    _register_login(mock)
    mock.post(SEND_URL, status=202)
    settings = EmailSettings.model_validate(
        {
            "transport": "graph",
            "from_address": "support@example.com",
            "graph": {"tenant_id": TENANT, "client_id": "app-client-id", "client_secret": "s"},
        }
    )
    sender = build_sender(settings, session=requests.Session())
    assert isinstance(sender, GraphSender)
    sender.send(_email())


def test_graph_needs_a_secret() -> None:
    """A Graph section without client_secret or client_secret_file is refused at load time."""
    with pytest.raises(ValueError, match="client_secret"):
        GraphSettings(tenant_id=TENANT, client_id="x")
