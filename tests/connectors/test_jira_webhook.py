"""Jira webhook intake: signatures, every real capture, normalisation and delivery dedupe."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import BadSignature, MalformedWebhook
from connectors.jira_webhook import DeliveryDeduper, parse_webhook, sign
from tests.conftest import VENDOR

CAPTURES = VENDOR / "jira" / "webhooks"
ALL_CAPTURES = sorted(CAPTURES.glob("*.json"))
EVENTS = {
    "issue_created",
    "issue_updated",
    "issue_deleted",
    "comment_created",
    "comment_updated",
    "comment_deleted",
}
SECRET = "s3cret-webhook-key"


def _body(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


def _signed(body: bytes, delivery: str = "d-1") -> dict[str, str]:
    return {"X-Hub-Signature": sign(SECRET, body), "X-Atlassian-Webhook-Identifier": delivery}


def test_capture_folder_is_present() -> None:
    """The vendor captures are where the tests expect them (so the parametrisation is not empty)."""
    assert len(ALL_CAPTURES) >= 39


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_every_capture_parses(path: Path) -> None:
    """Each real Cloud and Server delivery yields well-formed events naming a ticket."""
    events = parse_webhook({}, path.read_bytes(), secret=None)
    assert events
    for event in events:
        assert event.system == "jira"
        assert event.event in EVENTS
        assert event.ticket
        assert event.timestamp is not None and event.timestamp.tzinfo is not None
        assert event.author
        assert set(event.to_json()) == {
            "system",
            "event",
            "ticket",
            "changed_fields",
            "comment_id",
            "author",
            "timestamp",
        }
        if event.event.startswith("comment_") and event.event != "comment_deleted":
            assert event.comment_id


@pytest.mark.parametrize(
    ("name", "event", "ticket", "fields", "comment_id", "author"),
    [
        (
            "webhook-issue-created.json",
            "issue_created",
            "TES-41",
            ("description", "priority", "reporter", "Status", "summary"),
            None,
            "5c5f880629be9642ba529340",
        ),
        (
            "webhook-issue-updated-resolved.json",
            "issue_updated",
            "TES-41",
            ("resolution", "status"),
            None,
            "5c5f880629be9642ba529340",
        ),
        (
            "webhook-issue-updated-assigned-on-server.json",
            "issue_updated",
            "PRJA-37",
            ("assignee",),
            None,
            "admin",
        ),
        (
            "webhook-issue-deleted.json",
            "issue_deleted",
            "IDT-19",
            (),
            None,
            "5c5f880629be9642ba529340",
        ),
        (
            "webhook-cloud-comment-created.json",
            "comment_created",
            "TES-41",
            (),
            "10019",
            "5c5f880629be9642ba529340",
        ),
        (
            "webhook-cloud-comment-deleted.json",
            "comment_deleted",
            "KT-7",
            (),
            "10757",
            "5cedcb4355a88a0fc86388ba",
        ),
        (
            "webhook-server-comment-created.json",
            "comment_created",
            "10013",
            (),
            "10082",
            "levbrouk",
        ),
        (
            "webhook-server-issue-updated-commented-1.json",
            "comment_created",
            "PRJX-14",
            (),
            "10082",
            "levbrouk",
        ),
        (
            "webhook-server-issue-updated-comment-edited.json",
            "comment_updated",
            "PRJX-14",
            (),
            "10084",
            "levbrouk",
        ),
        (
            "webhook-server-issue-updated-comment-deleted.json",
            "comment_deleted",
            "PRJX-14",
            (),
            None,
            "levbrouk",
        ),
        (
            "webhook-server-old-issue-updated-no-event-type-comment-edited.json",
            "comment_updated",
            "PRJX-14",
            (),
            "10084",
            "levbrouk",
        ),
        (
            "webhook-server-old-issue-updated-no-event-type-edited.json",
            "issue_updated",
            "TES-41",
            ("description",),
            None,
            "5c5f880629be9642ba529340",
        ),
        (
            "webhook-issue-updated-started-working.json",
            "issue_updated",
            "TES-41",
            ("status",),
            None,
            "5c5f880629be9642ba529340",
        ),
    ],
)
def test_capture_normalisation(
    name: str,
    event: str,
    ticket: str,
    fields: tuple[str, ...],
    comment_id: str | None,
    author: str,
) -> None:
    """Known captures normalise to the expected event, ticket, fields, comment and author."""
    (only,) = parse_webhook({}, _body(name), secret=None)
    assert (only.event, only.ticket, only.changed_fields, only.comment_id, only.author) == (
        event,
        ticket,
        fields,
        comment_id,
        author,
    )


def test_server_comment_without_issue_takes_id_from_comment_url() -> None:
    """Server's comment_created has no issue object: the issue id comes from comment.self."""
    (event,) = parse_webhook({}, _body("webhook-server-comment-created.json"), secret=None)
    assert event.ticket == "10013"
    assert event.extra["issue_id"] == "10013"


def test_timestamp_is_the_payload_epoch_millis() -> None:
    """The event time is the payload's millisecond epoch, in UTC."""
    (event,) = parse_webhook({}, _body("webhook-server-comment-created.json"), secret=None)
    assert event.timestamp == datetime(2019, 6, 4, 0, 15, 17, 234000, tzinfo=UTC)


def test_dedupe_key_is_key_and_updated_for_issue_events() -> None:
    """Issue events are keyed on the issue key and its `updated` value."""
    (event,) = parse_webhook({}, _body("webhook-issue-updated-edited.json"), secret=None)
    assert event.dedupe_key == "TES-41:2019-02-15T19:10:01.805-0800"


def test_valid_signature_is_accepted() -> None:
    """A body signed with the shared secret parses."""
    body = _body("webhook-issue-updated-assigned.json")
    (event,) = parse_webhook(_signed(body), body, secret=SECRET)
    assert event.delivery_id == "d-1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature": "sha256=" + "0" * 64},
        {"X-Hub-Signature": "sha1=abc"},
        {"X-Hub-Signature": "garbage"},
        {"X-Hub-Signature": sign("other-secret", b"{}")},
    ],
    ids=["missing", "wrong", "sha1", "garbage", "other-secret"],
)
def test_wrong_or_missing_signature_is_rejected(headers: dict[str, str]) -> None:
    """Missing, malformed or wrong signatures raise BadSignature (HTTP 401)."""
    body = _body("webhook-issue-updated-assigned.json")
    with pytest.raises(BadSignature) as info:
        parse_webhook(headers, body, secret=SECRET)
    assert info.value.http_status == 401
    assert SECRET not in str(info.value)


def test_tampered_body_is_rejected() -> None:
    """A signature made for one body does not validate a modified body."""
    body = _body("webhook-issue-updated-assigned.json")
    headers = _signed(body)
    with pytest.raises(BadSignature):
        parse_webhook(headers, body.replace(b"TES-41", b"TES-42"), secret=SECRET)


def test_signature_is_checked_before_parsing() -> None:
    """An unsigned non-JSON body is refused for its signature, never parsed."""
    with pytest.raises(BadSignature):
        parse_webhook({}, b"not json", secret=SECRET)


def test_header_names_are_case_insensitive() -> None:
    """Lower-cased header names (as ASGI servers deliver them) work."""
    body = _body("webhook-issue-updated-assigned.json")
    headers = {k.lower(): v for k, v in _signed(body).items()}
    (event,) = parse_webhook(headers, body, secret=SECRET)
    assert event.delivery_id == "d-1"


def test_same_delivery_twice_yields_one_event_downstream() -> None:
    """A redelivery has the same delivery id and dedupe key, and the deduper drops it."""
    body = _body("webhook-issue-updated-raised-priority.json")
    first = parse_webhook(_signed(body, "abc-123"), body, secret=SECRET)
    second = parse_webhook(_signed(body, "abc-123"), body, secret=SECRET)
    assert [e.delivery_id for e in first] == [e.delivery_id for e in second] == ["abc-123"]
    assert [e.dedupe_key for e in first] == [e.dedupe_key for e in second]
    deduper = DeliveryDeduper()
    assert len(deduper.fresh(first)) == 1
    assert deduper.fresh(second) == []


def test_deduper_keeps_distinct_deliveries_and_is_bounded() -> None:
    """Different deliveries pass; the oldest ids are forgotten beyond capacity."""
    body = _body("webhook-issue-updated-raised-priority.json")
    deduper = DeliveryDeduper(capacity=2)
    events = [parse_webhook(_signed(body, f"d{n}"), body, secret=SECRET)[0] for n in range(3)]
    assert deduper.fresh(events) == events
    assert deduper.first_time(events[0])  # forgotten: capacity 2
    assert not deduper.first_time(events[2])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>nope</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"sys_id": "abc", "table": "incident"}', "no webhookEvent"),
        (b'{"webhookEvent": "jira:issue_updated", "user": {"name": "x"}}', "names no issue"),
    ],
)
def test_non_jira_bodies_are_malformed(body: bytes, reason: str) -> None:
    """Bodies that are not Jira issue webhooks raise MalformedWebhook with a clear reason."""
    with pytest.raises(MalformedWebhook, match=reason) as info:
        parse_webhook({}, body, secret=None)
    assert info.value.http_status == 400


def test_events_about_no_issue_yield_nothing() -> None:
    """A Jira event outside issues and comments (a sprint) is valid but yields no change."""
    body = json.dumps({"webhookEvent": "sprint_started", "timestamp": 1, "sprint": {}}).encode()
    assert parse_webhook({}, body, secret=None) == []


def test_field_change_with_comment_yields_both_events() -> None:
    """A transition with a comment in one delivery reports the field change and the comment."""
    payload = json.loads(_body("webhook-issue-updated-started-working.json"))
    payload["comment"] = {
        "id": "777",
        "self": "https://x/rest/api/2/issue/10040/comment/777",
        "author": {"accountId": "a1"},
        "created": "2019-02-15T19:14:22.002-0800",
        "updated": "2019-02-15T19:14:22.002-0800",
    }
    payload["issue_event_type_name"] = "issue_commented"
    payload["changelog"]["items"] = [{"field": "status"}]
    events = parse_webhook({}, json.dumps(payload).encode(), secret=None)
    assert [e.event for e in events] == ["issue_updated", "comment_created"]
    assert events[0].dedupe_key != events[1].dedupe_key


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    """Whatever arrives, the parser returns events or raises MalformedWebhook, nothing else."""
    with contextlib.suppress(MalformedWebhook):
        parse_webhook({}, raw, secret=None)


@given(
    st.dictionaries(
        st.sampled_from(["webhookEvent", "issue", "comment", "user", "timestamp", "changelog"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_arbitrary_json_objects_never_crash(payload: dict[str, object]) -> None:
    """Odd JSON shapes give events or MalformedWebhook, never an unexpected exception."""
    if "webhookEvent" in payload and isinstance(payload["webhookEvent"], str):
        payload["webhookEvent"] = "jira:issue_updated"
    with contextlib.suppress(MalformedWebhook):
        parse_webhook({}, json.dumps(payload).encode(), secret=None)
