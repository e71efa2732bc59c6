"""EWS transport through exchangelib, with the EWS endpoint faked by `responses`.

The fake answers SOAP the way Exchange 2016 does for the operations a send needs (GetFolder for
the mailbox root and Sent Items, CreateItem, FindItem), so exchangelib runs unmodified: these
tests check the SOAP request it puts on the wire, not a mock of its Python objects.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
import requests
import responses

from connectors.email import (
    EwsSender,
    EwsSettings,
    Identity,
    InvalidAddress,
    OutgoingEmail,
    make_message_id,
    thread_root_id,
)
from connectors.errors import AuthFailed, RateLimited, RetryableError

IDENTITY = Identity("support@example.com", "Acme Support")
_NS = (
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"'
)
_XML = {"Content-Type": "text/xml; charset=utf-8"}
_endpoints = itertools.count(1)

Reply = tuple[int, dict[str, str], str]


def _envelope(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
        '<h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" '
        'MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" '
        'Version="V2017_07_11"/></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


def _get_folder(request_body: str) -> Reply:
    messages = "".join(
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        "</m:ResponseCode><m:Folders><t:Folder>"
        f'<t:FolderId Id="folder-{name}" ChangeKey="AQAAAA=="/>'
        f"<t:DisplayName>{name}</t:DisplayName><t:FolderClass>IPF.Note</t:FolderClass>"
        "<t:TotalCount>0</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount>"
        "<t:UnreadCount>0</t:UnreadCount></t:Folder></m:Folders></m:GetFolderResponseMessage>"
        for name in re.findall(r'DistinguishedFolderId Id="(\w+)"', request_body)
    )
    return (
        200,
        _XML,
        _envelope(
            f"<m:GetFolderResponse {_NS}><m:ResponseMessages>{messages}</m:ResponseMessages>"
            "</m:GetFolderResponse>"
        ),
    )


def _create_ok() -> Reply:
    return (
        200,
        _XML,
        _envelope(
            f"<m:CreateItemResponse {_NS}><m:ResponseMessages>"
            '<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
            "</m:ResponseCode><m:Items/></m:CreateItemResponseMessage></m:ResponseMessages>"
            "</m:CreateItemResponse>"
        ),
    )


def _create_error(code: str, text: str) -> Reply:
    return (
        200,
        _XML,
        _envelope(
            f"<m:CreateItemResponse {_NS}><m:ResponseMessages>"
            f'<m:CreateItemResponseMessage ResponseClass="Error"><m:MessageText>{text}'
            f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
            "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items/>"
            "</m:CreateItemResponseMessage></m:ResponseMessages></m:CreateItemResponse>"
        ),
    )


def _server_busy(back_off_ms: int) -> Reply:
    return (
        500,
        _XML,
        _envelope(
            '<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">'
            'a:ErrorServerBusy</faultcode><faultstring xml:lang="en-US">The server cannot service '
            "this request right now. Try again later.</faultstring><detail>"
            '<e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">'
            "ErrorServerBusy</e:ResponseCode>"
            '<e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">'
            "The server cannot service this request right now. Try again later.</e:Message>"
            '<t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
            f'<t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></t:MessageXml>'
            "</detail></s:Fault>"
        ),
    )


def _find(count: int) -> Reply:
    items = "".join(
        f'<t:Message><t:ItemId Id="item-{i}" ChangeKey="CQAAAA=="/></t:Message>'
        for i in range(count)
    )
    return (
        200,
        _XML,
        _envelope(
            f"<m:FindItemResponse {_NS}><m:ResponseMessages>"
            '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
            f'</m:ResponseCode><m:RootFolder IndexedPagingOffset="{count}" '
            f'TotalItemsInView="{count}" IncludesLastItemInRange="true"><t:Items>{items}</t:Items>'
            "</m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"
        ),
    )


class FakeExchange:
    """Answers EWS SOAP by operation name; records each operation and its request body."""

    def __init__(self, mock: responses.RequestsMock, endpoint: str) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.create: Callable[[], Reply] = _create_ok
        self.find: Callable[[], Reply] = lambda: _find(0)
        mock.add_callback(responses.POST, endpoint, callback=self._answer)

    def _answer(self, request: requests.PreparedRequest) -> Reply:
        raw = request.body or b""
        body = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        match = re.search(r"<s:Body><m:(\w+)", body)
        operation = match.group(1) if match else "?"
        self.calls.append((operation, body, dict(request.headers)))
        if operation == "GetFolder":
            return _get_folder(body)
        if operation == "CreateItem":
            return self.create()
        if operation == "FindItem":
            return self.find()
        raise AssertionError(f"unexpected EWS operation {operation}")

    def operations(self) -> list[str]:
        return [op for op, _, _ in self.calls]

    def body(self, operation: str) -> str:
        return next(b for op, b, _ in self.calls if op == operation)


@pytest.fixture()
def exchange() -> Iterator[tuple[FakeExchange, str]]:
    # A fresh endpoint per test: exchangelib caches protocols per endpoint.
    endpoint = f"https://mail{next(_endpoints)}.example.com/EWS/Exchange.asmx"
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield FakeExchange(mock, endpoint), endpoint


def _sender(endpoint: str, **extra: Any) -> EwsSender:
    settings = EwsSettings(
        service_endpoint=endpoint,
        username="svc-escalation",
        password="ews-password",  # type: ignore[arg-type]
        auth_type="basic",
        exchange_version="15.1",
        **extra,
    )
    return EwsSender(settings, IDENTITY)


def _email(key: str = "INC0010001|escalated|1") -> OutgoingEmail:
    root = thread_root_id("INC0010001", "example.com")
    return OutgoingEmail(
        to=("customer@example.org",),
        subject="[INC0010001] Your request has been escalated",
        text="Plain part\n",
        html="<p>HTML part</p>\n",
        message_id=make_message_id(key, "example.com"),
        in_reply_to=root,
        references=(root,),
    )


def test_send_and_save_posts_the_mime_message(exchange: tuple[FakeExchange, str]) -> None:
    """CreateItem SendAndSaveCopy into Sent Items carries the MIME message with its headers."""
    fake, endpoint = exchange
    message = _email()
    assert _sender(endpoint).send(message) == message.message_id
    assert fake.operations() == ["GetFolder", "GetFolder", "CreateItem"]
    body = fake.body("CreateItem")
    assert '<t:RequestServerVersion Version="Exchange2016"/>' in body
    assert 'MessageDisposition="SendAndSaveCopy"' in body
    assert re.search(r'<m:SavedItemFolderId><t:DistinguishedFolderId Id="sentitems">', body)
    mime_b64 = re.search(r"<t:MimeContent>([^<]+)</t:MimeContent>", body)
    assert mime_b64 is not None
    parsed = message_from_bytes(base64.b64decode(mime_b64.group(1)), policy=policy.default)
    assert parsed["Message-ID"] == message.message_id
    assert parsed["In-Reply-To"] == thread_root_id("INC0010001", "example.com")
    assert parsed["To"] == "customer@example.org"
    assert parsed.get_body(("plain",)) is not None
    assert parsed.get_body(("html",)) is not None
    headers = fake.calls[-1][2]
    expected = base64.b64encode(b"svc-escalation:ews-password").decode()
    assert headers["Authorization"] == f"Basic {expected}"


def test_account_is_resolved_once(exchange: tuple[FakeExchange, str]) -> None:
    """A second message reuses the account: one more CreateItem, no folder lookups."""
    fake, endpoint = exchange
    sender = _sender(endpoint)
    sender.send(_email("a|escalated|1"))
    sender.send(_email("a|public_update|2"))
    assert fake.operations() == ["GetFolder", "GetFolder", "CreateItem", "CreateItem"]


def test_send_only_when_no_copy_is_kept(exchange: tuple[FakeExchange, str]) -> None:
    """save_to_sent_items = false sends with SendOnly and touches no folder."""
    fake, endpoint = exchange
    _sender(endpoint, save_to_sent_items=False).send(_email())
    assert fake.operations() == ["CreateItem"]
    assert 'MessageDisposition="SendOnly"' in fake.body("CreateItem")


def test_invalid_recipients_is_permanent(exchange: tuple[FakeExchange, str]) -> None:
    """ErrorInvalidRecipients becomes InvalidAddress, which the outbox dead-letters."""
    fake, endpoint = exchange
    fake.create = lambda: _create_error(
        "ErrorInvalidRecipients", "At least one recipient is not valid."
    )
    with pytest.raises(InvalidAddress, match="ErrorInvalidRecipients"):
        _sender(endpoint).send(_email())


def test_server_busy_carries_the_back_off(exchange: tuple[FakeExchange, str]) -> None:
    """ErrorServerBusy is RateLimited with Exchange's BackOffMilliseconds as retry_after."""
    fake, endpoint = exchange
    fake.create = lambda: _server_busy(5000)
    with pytest.raises(RateLimited) as info:
        _sender(endpoint).send(_email())
    assert info.value.retry_after == 5.0


def test_http_503_is_transient(exchange: tuple[FakeExchange, str]) -> None:
    """An HTTP 503 from the EWS endpoint is a RetryableError, not a dead letter."""
    fake, endpoint = exchange
    fake.create = lambda: (503, {"Retry-After": "5"}, "")
    with pytest.raises(RetryableError):
        _sender(endpoint).send(_email())


def test_refused_credentials(exchange: tuple[FakeExchange, str]) -> None:
    """HTTP 401 is AuthFailed, without the password in the message."""
    fake, endpoint = exchange
    fake.create = lambda: (401, {}, "")
    with pytest.raises(AuthFailed) as info:
        _sender(endpoint).send(_email())
    assert "ews-password" not in str(info.value)


@pytest.mark.parametrize(("count", "expected"), [(1, True), (0, False)])
def test_sent_items_lookup(exchange: tuple[FakeExchange, str], count: int, expected: bool) -> None:
    """was_sent runs FindItem in Sent Items restricted to the InternetMessageId."""
    fake, endpoint = exchange
    fake.find = lambda: _find(count)
    assert _sender(endpoint).was_sent("<abc@example.com>") is expected
    body = fake.body("FindItem")
    assert '<t:FieldURI FieldURI="message:InternetMessageId"/>' in body
    assert '<t:Constant Value="&lt;abc@example.com&gt;"/>' in body
    assert '<t:DistinguishedFolderId Id="sentitems">' in body


def test_settings_require_https() -> None:
    """An EWS endpoint over plain HTTP is refused at load time."""
    with pytest.raises(ValueError, match="https"):
        EwsSettings(service_endpoint="http://mail.example.com/EWS/Exchange.asmx", username="u")
