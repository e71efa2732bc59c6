"""A strict EWS double for the operations the mailbox reader uses, answering documented SOAP.

The response shapes follow the XML examples of Microsoft's EWS reference
(MicrosoftDocs/office-developer-exchange-docs, docs/web-service-reference: GetFolder, FindFolder,
CreateFolder, FindItem, GetItem with MimeContent, UpdateItem, MoveItem operations, and the
ErrorItemNotFound response message); see tests/fixtures/vendor/microsoft/ews/README.md. The
double is stateful (folders, items with categories and read flags) and gives a moved item a new
ItemId, as Exchange does. exchangelib runs unmodified over `responses`; an operation the double
does not know fails the test.
"""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import requests
import responses

NS = (
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"'
)
XML = {"Content-Type": "text/xml; charset=utf-8"}
DISTINGUISHED = {"msgfolderroot": "root-id", "inbox": "inbox-id", "root": "top-id"}

Reply = tuple[int, dict[str, str], str]


def envelope(body: str) -> str:
    """A SOAP envelope with the server version header Exchange 2016 sends."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
        '<h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" '
        'MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" '
        'Version="V2017_07_11"/></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


def _response(operation: str, messages: str) -> Reply:
    return (
        200,
        XML,
        envelope(
            f"<m:{operation}Response {NS}><m:ResponseMessages>{messages}</m:ResponseMessages>"
            f"</m:{operation}Response>"
        ),
    )


def _ok(operation: str, inner: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f"</m:ResponseCode>{inner}</m:{operation}ResponseMessage>"
    )


def _error(operation: str, code: str, text: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{text}'
        f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{operation}ResponseMessage>"
    )


@dataclass
class Item:
    """A message in the double's mailbox."""

    mime: bytes
    folder: str
    message_id: str
    received: str
    categories: list[str] = field(default_factory=list)
    is_read: bool = False
    changekey: int = 1


class EwsMailboxDouble:
    """Answers EWS SOAP by operation; records the operations it saw."""

    def __init__(self, mock: responses.RequestsMock, endpoint: str) -> None:
        self.folders: dict[str, dict[str, str]] = {
            "top-id": {"name": "", "parent": ""},
            "root-id": {"name": "Top of Information Store", "parent": "top-id"},
            "inbox-id": {"name": "Inbox", "parent": "root-id"},
        }
        self.items: dict[str, Item] = {}
        self.operations: list[str] = []
        self.busy_next = 0
        self._ids = itertools.count(1)
        mock.add_callback(responses.POST, endpoint, callback=self._answer)

    def add(
        self, mime: bytes, folder: str = "inbox-id", categories: list[str] | None = None
    ) -> str:
        """Deliver a message; returns its ItemId."""
        item_id = f"AAMkAd{next(self._ids):04d}"
        mid = re.search(rb"Message-ID:\s*(<[^>]+>)", mime, re.IGNORECASE)
        self.items[item_id] = Item(
            mime=mime,
            folder=folder,
            message_id=mid.group(1).decode() if mid else "",
            received=f"2026-11-03T10:{len(self.items):02d}:00Z",
            categories=list(categories or ()),
        )
        return item_id

    def in_folder(self, name: str) -> list[str]:
        """Message-IDs of the items in the folder with that display name."""
        ids = {fid for fid, f in self.folders.items() if f["name"] == name}
        return [i.message_id for i in self.items.values() if i.folder in ids]

    # ---- SOAP ----

    def _answer(self, request: requests.PreparedRequest) -> Reply:
        raw = request.body or b""
        body = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        match = re.search(r"<s:Body><m:(\w+)", body)
        operation = match.group(1) if match else "?"
        self.operations.append(operation)
        if self.busy_next:
            self.busy_next -= 1
            return self._busy()
        handler = getattr(self, f"_{operation}", None)
        if handler is None:
            raise AssertionError(f"unexpected EWS operation {operation}")
        return handler(body)

    def _busy(self) -> Reply:
        return (
            500,
            XML,
            envelope(
                '<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/'
                '2006/types">a:ErrorServerBusy</faultcode><faultstring xml:lang="en-US">The '
                "server cannot service this request right now. Try again later.</faultstring>"
                '<detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/'
                '2006/errors">ErrorServerBusy</e:ResponseCode><e:Message xmlns:e="http://schemas.'
                'microsoft.com/exchange/services/2006/errors">The server cannot service this '
                'request right now. Try again later.</e:Message><t:MessageXml xmlns:t="http://'
                'schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOff'
                'Milliseconds">2000</t:Value></t:MessageXml></detail></s:Fault>'
            ),
        )

    def _folder_xml(self, folder_id: str) -> str:
        folder = self.folders[folder_id]
        count = sum(1 for i in self.items.values() if i.folder == folder_id)
        children = sum(1 for f in self.folders.values() if f["parent"] == folder_id)
        return (
            f'<t:Folder><t:FolderId Id="{folder_id}" ChangeKey="AQAAAA=="/>'
            f'<t:ParentFolderId Id="{folder["parent"]}" ChangeKey="AQAAAA=="/>'
            f"<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{escape(folder['name'])}"
            f"</t:DisplayName><t:TotalCount>{count}</t:TotalCount>"
            f"<t:ChildFolderCount>{children}</t:ChildFolderCount>"
            f"<t:UnreadCount>{count}</t:UnreadCount></t:Folder>"
        )

    def _target_folders(self, body: str) -> list[str]:
        found = []
        for kind, value in re.findall(r'<t:(DistinguishedFolderId|FolderId) Id="([^"]+)"', body):
            found.append(
                DISTINGUISHED.get(value, value) if kind == "DistinguishedFolderId" else value
            )
        return found

    def _GetFolder(self, body: str) -> Reply:
        messages = ""
        for folder_id in self._target_folders(body.split("<m:FolderIds>", 1)[1]):
            if folder_id in self.folders:
                messages += _ok(
                    "GetFolder", f"<m:Folders>{self._folder_xml(folder_id)}</m:Folders>"
                )
            else:
                messages += _error(
                    "GetFolder",
                    "ErrorFolderNotFound",
                    "The specified folder could not be found in the store.",
                )
        return _response("GetFolder", messages)

    def _FindFolder(self, body: str) -> Reply:
        (parent,) = self._target_folders(body.split("<m:ParentFolderIds>", 1)[1])
        wanted = re.search(
            r'FieldURI="folder:DisplayName"/><t:FieldURIOrConstant><t:Constant Value="([^"]*)"',
            body,
        )
        children = [
            fid
            for fid, f in self.folders.items()
            if f["parent"] == parent and (wanted is None or f["name"] == wanted.group(1))
        ]
        folders = "".join(self._folder_xml(fid) for fid in children)
        inner = (
            f'<m:RootFolder IndexedPagingOffset="{len(children)}" '
            f'TotalItemsInView="{len(children)}" '
            f'IncludesLastItemInRange="true"><t:Folders>{folders}</t:Folders></m:RootFolder>'
        )
        return _response("FindFolder", _ok("FindFolder", inner))

    def _CreateFolder(self, body: str) -> Reply:
        (parent,) = self._target_folders(body.split("<m:ParentFolderId>", 1)[1])
        name = re.search(r"<t:DisplayName>([^<]*)</t:DisplayName>", body)
        assert name is not None, body
        if any(f["parent"] == parent and f["name"] == name.group(1) for f in self.folders.values()):
            return _response(
                "CreateFolder",
                _error(
                    "CreateFolder",
                    "ErrorFolderExists",
                    "A folder with the specified name already exists.",
                ),
            )
        folder_id = f"folder-{next(self._ids)}"
        self.folders[folder_id] = {"name": name.group(1), "parent": parent}
        inner = (
            f'<m:Folders><t:Folder><t:FolderId Id="{folder_id}" ChangeKey="AQAAAA=="/>'
            "</t:Folder></m:Folders>"
        )
        return _response("CreateFolder", _ok("CreateFolder", inner))

    def _item_xml(self, item_id: str, *, mime: bool = False) -> str:
        item = self.items[item_id]
        categories = "".join(f"<t:String>{escape(c)}</t:String>" for c in item.categories)
        mime_xml = (
            '<t:MimeContent CharacterSet="UTF-8">'
            f"{base64.b64encode(item.mime).decode()}</t:MimeContent>"
            if mime
            else ""
        )
        return (
            f"<t:Message>{mime_xml}"
            f'<t:ItemId Id="{item_id}" ChangeKey="CQAAA{item.changekey}=="/>'
            f"<t:Size>{len(item.mime)}</t:Size>"
            f"<t:Categories>{categories}</t:Categories>"
            f"<t:DateTimeReceived>{item.received}</t:DateTimeReceived>"
            f"<t:InternetMessageId>{escape(item.message_id)}</t:InternetMessageId>"
            f"<t:IsRead>{'true' if item.is_read else 'false'}</t:IsRead></t:Message>"
        )

    def _FindItem(self, body: str) -> Reply:
        (folder,) = self._target_folders(body.split("<m:ParentFolderIds>", 1)[1])
        ids = sorted(
            (i for i, it in self.items.items() if it.folder == folder),
            key=lambda i: self.items[i].received,
        )
        items = "".join(self._item_xml(i) for i in ids)
        inner = (
            f'<m:RootFolder IndexedPagingOffset="{len(ids)}" TotalItemsInView="{len(ids)}" '
            f'IncludesLastItemInRange="true"><t:Items>{items}</t:Items></m:RootFolder>'
        )
        return _response("FindItem", _ok("FindItem", inner))

    def _GetItem(self, body: str) -> Reply:
        messages = ""
        for item_id in re.findall(r'<t:ItemId Id="([^"]+)"', body):
            if item_id in self.items:
                messages += _ok(
                    "GetItem", f"<m:Items>{self._item_xml(item_id, mime=True)}</m:Items>"
                )
            else:
                messages += _error(
                    "GetItem",
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                )
        return _response("GetItem", messages)

    def _UpdateItem(self, body: str) -> Reply:
        (item_id,) = re.findall(r'<t:ItemId Id="([^"]+)"', body)
        item = self.items.get(item_id)
        if item is None:
            return _response(
                "UpdateItem",
                _error(
                    "UpdateItem",
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            )
        for change in re.findall(r"<t:(SetItemField|DeleteItemField)>(.*?)</t:\1>", body, re.S):
            kind, xml = change
            uri = re.search(r'FieldURI="([^"]+)"', xml)
            assert uri is not None, xml
            if uri.group(1) == "item:Categories":
                item.categories = (
                    re.findall(r"<t:String>([^<]*)</t:String>", xml)
                    if kind == "SetItemField"
                    else []
                )
            elif uri.group(1) == "message:IsRead":
                # xs:boolean: "true" or "1" (exchangelib writes 1)
                item.is_read = bool(re.search(r"<t:IsRead>(true|1)</t:IsRead>", xml))
            else:
                raise AssertionError(f"unexpected field update {uri.group(1)}")
        item.changekey += 1
        inner = (
            f'<m:Items><t:Message><t:ItemId Id="{item_id}" ChangeKey="CQAAA{item.changekey}=="/>'
            "</t:Message></m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"
        )
        return _response("UpdateItem", _ok("UpdateItem", inner))

    def _MoveItem(self, body: str) -> Reply:
        (destination,) = self._target_folders(
            body.split("<m:ToFolderId>", 1)[1].split("</m:ToFolderId>", 1)[0]
        )
        (item_id,) = re.findall(r'<t:ItemId Id="([^"]+)"', body.split("<m:ItemIds>", 1)[1])
        item = self.items.pop(item_id, None)
        if item is None:
            return _response(
                "MoveItem",
                _error(
                    "MoveItem",
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            )
        item.folder = destination
        new_id = f"AAMkAd{next(self._ids):04d}"
        self.items[new_id] = item
        inner = (
            f'<m:Items><t:Message><t:ItemId Id="{new_id}" ChangeKey="FwAAABY"/>'
            "</t:Message></m:Items>"
        )
        return _response("MoveItem", _ok("MoveItem", inner))
