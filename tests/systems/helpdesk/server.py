"""The help desk itself, in memory and strict: what it does not offer, or a value it does not
know, is refused the way a vendor refuses it, so a test cannot pass on a request the real thing
would refuse. Every request is logged, for tests to assert on."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from connectors.errors import InvalidRequest, NotFound

STATES = ("open", "working", "waiting", "solved", "closed", "dropped")
PRIORITIES = ("urgent", "high", "normal", "low", "minimal")
# The columns a ticket has; any other is refused.
COLUMNS = frozenset({"subject", "body", "state", "priority", "tags"})
BASE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class HelpdeskServer:
    """One help desk, found by its URL (as the adapter of a configured section finds it)."""

    running: ClassVar[dict[str, HelpdeskServer]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self.tickets: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self._ids = itertools.count(1)
        self._clock = itertools.count()

    @classmethod
    def start(cls, url: str) -> HelpdeskServer:
        """A fresh help desk at `url`."""
        server = cls.running[url] = cls(url)
        return server

    @classmethod
    def at(cls, url: str) -> HelpdeskServer:
        """The help desk at `url` (NotFound: nothing listens there)."""
        found = cls.running.get(url)
        if found is None:
            raise NotFound(f"no help desk at {url}", system="helpdesk", status=404)
        return found

    @classmethod
    def stop(cls, url: str) -> None:
        """Take the help desk at `url` down."""
        cls.running.pop(url, None)

    def _now(self) -> str:
        return (BASE + timedelta(seconds=next(self._clock))).isoformat()

    def _ticket(self, ident: str) -> dict[str, Any]:
        found = self.tickets.get(ident)
        if found is None:
            raise NotFound(f"GET /tickets/{ident}: 404", system="helpdesk", status=404)
        return found

    def _check(self, fields: dict[str, Any]) -> None:
        unknown = sorted(set(fields) - COLUMNS)
        if unknown:
            raise InvalidRequest(f"unknown columns {unknown}", system="helpdesk", status=422)
        if "state" in fields and fields["state"] not in STATES:
            raise InvalidRequest(f"state {fields['state']!r}", system="helpdesk", status=422)
        if "priority" in fields and fields["priority"] not in PRIORITIES:
            raise InvalidRequest(f"priority {fields['priority']!r}", system="helpdesk", status=422)
        tags = fields.get("tags")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(t, str) for t in tags)
        ):
            raise InvalidRequest("tags must be a list of strings", system="helpdesk", status=422)

    def _touch(self, ticket: dict[str, Any]) -> None:
        ticket["version"] = str(int(ticket["version"]) + 1)
        ticket["updated_at"] = self._now()

    # --- the API --------------------------------------------------------------------------------

    def open(self, subject: str, **fields: Any) -> dict[str, Any]:
        """POST /tickets: a person opens a ticket (or the integration creates one)."""
        self.requests.append(f"POST /tickets {subject!r}")
        if not subject:
            raise InvalidRequest("subject is required", system="helpdesk", status=422)
        values = {"subject": subject, "body": "", "state": "open", "priority": "normal"}
        values |= fields
        self._check(values)
        number = next(self._ids)
        ticket: dict[str, Any] = {
            "id": f"t{number}",
            "number": f"HD-{number}",
            "tags": [],
            **values,
            "notes": [],
            "links": [],
            "version": "0",
            "updated_at": self._now(),
        }
        self.tickets[f"t{number}"] = ticket
        return copy.deepcopy(ticket)

    def me(self) -> str:
        """GET /me: who the integration is."""
        self.requests.append("GET /me")
        return "escalation-sync"

    def get(self, ident: str) -> dict[str, Any]:
        """GET /tickets/{id}, by id or number."""
        self.requests.append(f"GET /tickets/{ident}")
        for ticket in self.tickets.values():
            if ident in (ticket["id"], ticket["number"]):
                return copy.deepcopy(ticket)
        raise NotFound(f"GET /tickets/{ident}: 404", system="helpdesk", status=404)

    def update(self, ident: str, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH /tickets/{id}: answers with the ticket as stored."""
        self.requests.append(f"PATCH /tickets/{ident} {sorted(fields)}")
        ticket = self._ticket(ident)
        self._check(fields)
        ticket.update(copy.deepcopy(fields))
        self._touch(ticket)
        return copy.deepcopy(ticket)

    def add_note(self, ident: str, text: str, *, private: bool, author: str) -> dict[str, Any]:
        """POST /tickets/{id}/notes."""
        self.requests.append(f"POST /tickets/{ident}/notes")
        ticket = self._ticket(ident)
        if not text.strip():
            raise InvalidRequest("a note needs text", system="helpdesk", status=422)
        note = {"id": f"n{next(self._ids)}", "text": text, "private": private, "author": author}
        ticket["notes"].append(note)
        self._touch(ticket)
        return copy.deepcopy(note)

    def put_link(self, ident: str, url: str, title: str) -> None:
        """PUT /tickets/{id}/links: one link per URL (a second PUT updates its title)."""
        self.requests.append(f"PUT /tickets/{ident}/links")
        ticket = self._ticket(ident)
        ticket["links"] = [link for link in ticket["links"] if link["url"] != url]
        ticket["links"].append({"url": url, "title": title})

    def changed_since(self, since: datetime) -> list[dict[str, Any]]:
        """GET /tickets?updated_since=..., oldest first."""
        self.requests.append("GET /tickets?updated_since")
        found = [
            t for t in self.tickets.values() if datetime.fromisoformat(t["updated_at"]) >= since
        ]
        return sorted(copy.deepcopy(found), key=lambda t: str(t["updated_at"]))
