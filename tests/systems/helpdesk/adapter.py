"""What the engine does to the help desk, over its API (here: the in-memory server)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from connectors.errors import InvalidRequest, NotFound
from mapping import VendorWrite
from mapping.model import System
from sync.pipeline.markers import Marker, with_marker
from sync.systems.base import Changed, Created
from tests.systems.helpdesk.server import HelpdeskServer


class HelpdeskAdapter:
    """Help desk tickets, addressed by id."""

    def __init__(self, server: HelpdeskServer, *, author: str) -> None:
        self.system = System("helpdesk")
        self.server = server
        # Who the integration writes notes as.
        self.author = author

    def probe(self) -> None:
        """GET /me: the help desk still takes our key."""
        self.server.me()

    def read(self, ticket_id: str) -> dict[str, Any]:
        """The ticket with its notes."""
        return self.server.get(ticket_id)

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """PATCH the columns; the help desk has no workflow to transition through."""
        if write.transition_to is not None:
            raise InvalidRequest("the help desk has no transitions", system="helpdesk", status=400)
        stored = self.server.update(ticket_id, dict(write.fields)) if write.fields else None
        for _element, text in write.journal:
            self.server.add_note(ticket_id, text, private=True, author=self.author)
        return stored

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        """The whole ticket (the API has no field selection)."""
        return self.read(ticket_id)

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        """A note carrying the marker; private unless `public`."""
        note = self.server.add_note(
            ticket_id, with_marker(body, marker), private=not public, author=self.author
        )
        return str(note["id"])

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        """The note carrying `marker`, if any."""
        for note in self.read(ticket_id)["notes"]:
            if marker.text() in note["text"]:
                return str(note["id"])
        return None

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        """Open a ticket with the plain columns."""
        fields = dict(write.fields)
        made = self.server.open(str(fields.pop("subject", "")), **fields)
        return Created(made["id"], made["number"], f"{self.server.url}/tickets/{made['id']}")

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        """A link on the ticket, one per URL."""
        self.server.put_link(ticket_id, url, title)

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """The help desk keeps no files."""
        return []

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """No file can be downloaded: there are none."""
        raise NotFound(f"no attachment {attachment_id}", system="helpdesk", status=404)

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        """Refused: the help desk takes no files."""
        raise InvalidRequest("the help desk takes no attachments", system="helpdesk", status=415)

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        """Tickets updated at or after `since`."""
        for ticket in self.server.changed_since(since):
            yield Changed(
                ticket["id"], datetime.fromisoformat(ticket["updated_at"]), ticket["version"]
            )
