"""Business Rule posts: signature, freshness, replay and shape are checked before trusting them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import BadSignature, MalformedWebhook, StaleWebhook
from connectors.servicenow_webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    parse_webhook,
    sign,
    signed_headers,
)

SECRET = "s3cret-for-tests"
NOW = datetime(2026, 1, 22, 14, 30, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "servicenow" / "business_rule.js"


def payload(**overrides: str) -> bytes:
    data = {
        "table": "incident",
        "sys_id": "c537bae64f411200adf9f8e18110c76e",
        "number": "INC0010002",
        "sys_mod_count": "3",
        "sys_updated_on": "2026-01-22 14:28:24",
        "sys_updated_by": "abel.tuter",
        "operation": "update",
    }
    data.update(overrides)
    return json.dumps(data, separators=(",", ":")).encode()


def parse(headers: dict[str, str], body: bytes, **kwargs: object) -> list:
    options: dict[str, object] = {"secret": SECRET, "now": NOW, "replay_window": WINDOW}
    options.update(kwargs)
    return parse_webhook(headers, body, **options)  # type: ignore[arg-type]


def test_a_valid_post_parses_into_one_change_event() -> None:
    """A correctly signed, fresh post becomes one event keyed by sys_id and sys_mod_count."""
    body = payload()
    [event] = parse(signed_headers(SECRET, body, NOW - timedelta(seconds=5)), body)
    assert event.system == "servicenow"
    assert event.event == "incident_updated"
    assert event.ticket == "c537bae64f411200adf9f8e18110c76e"
    assert event.author == "abel.tuter"
    assert event.timestamp == datetime(2026, 1, 22, 14, 28, 24, tzinfo=UTC)
    assert event.delivery_id == event.dedupe_key == "c537bae64f411200adf9f8e18110c76e:3"
    assert event.extra["number"] == "INC0010002"
    assert event.extra["table"] == "incident"


def test_insert_and_other_tables_name_the_event_by_table_and_operation() -> None:
    """An insert is incident_inserted; a rule on another table names events after that table."""
    for body, name in (
        (payload(operation="insert", sys_mod_count="0"), "incident_inserted"),
        (payload(table="problem"), "problem_updated"),
    ):
        [event] = parse(signed_headers(SECRET, body, NOW), body)
        assert event.event == name


def test_header_names_are_case_insensitive() -> None:
    """Proxies may lower-case header names; verification still finds them."""
    body = payload()
    headers = {k.lower(): v for k, v in signed_headers(SECRET, body, NOW).items()}
    assert len(parse(headers, body)) == 1


def test_signature_formula_is_base64_hmac_of_timestamp_dot_body() -> None:
    """The documented formula: base64(HMAC-SHA256(secret, timestamp + "." + body))."""
    import base64
    import hashlib
    import hmac

    body = payload()
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), b"1769092200." + body, hashlib.sha256).digest()
    ).decode()
    assert sign(SECRET, "1769092200", body) == expected


def test_wrong_secret_is_bad_signature() -> None:
    """A post signed with another secret is refused."""
    body = payload()
    with pytest.raises(BadSignature):
        parse(signed_headers("other-secret", body, NOW), body)


def test_tampered_body_is_bad_signature() -> None:
    """Changing the body after signing breaks the signature."""
    body = payload()
    headers = signed_headers(SECRET, body, NOW)
    with pytest.raises(BadSignature):
        parse(headers, payload(sys_mod_count="4"))


def test_timestamp_is_part_of_the_signature() -> None:
    """Moving the timestamp header to look fresh breaks the signature."""
    body = payload()
    headers = signed_headers(SECRET, body, NOW - timedelta(hours=1))
    headers[TIMESTAMP_HEADER] = str(int(NOW.timestamp()))
    with pytest.raises(BadSignature):
        parse(headers, body)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: "1769092200"},
        {SIGNATURE_HEADER: "abc="},
        {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: "abc="},
        {TIMESTAMP_HEADER: "1769092200", SIGNATURE_HEADER: "not base64!"},
    ],
)
def test_missing_or_garbled_headers_are_bad_signature(headers: dict[str, str]) -> None:
    """Without a usable timestamp and signature nothing in the body is read."""
    with pytest.raises(BadSignature):
        parse(headers, payload())


@pytest.mark.parametrize("age", [timedelta(minutes=6), -timedelta(minutes=6)])
def test_timestamp_outside_the_window_is_stale(age: timedelta) -> None:
    """A correctly signed post too old (or too far in the future) is refused as stale."""
    body = payload()
    with pytest.raises(StaleWebhook):
        parse(signed_headers(SECRET, body, NOW - age), body)


def test_replayed_post_is_dropped_by_the_guard() -> None:
    """The same change posted twice within the window yields an event only the first time."""
    guard = ReplayGuard(WINDOW)
    body = payload()
    headers = signed_headers(SECRET, body, NOW)
    assert len(parse(headers, body, replay_guard=guard)) == 1
    assert parse(headers, body, replay_guard=guard, now=NOW + timedelta(seconds=30)) == []
    newer = payload(sys_mod_count="4")
    assert len(parse(signed_headers(SECRET, newer, NOW), newer, replay_guard=guard)) == 1


def test_replay_after_the_window_is_stale_even_when_forgotten() -> None:
    """Once the guard forgot a key, the signed timestamp makes the replay stale instead."""
    guard = ReplayGuard(WINDOW)
    body = payload()
    headers = signed_headers(SECRET, body, NOW)
    parse(headers, body, replay_guard=guard)
    with pytest.raises(StaleWebhook):
        parse(headers, body, replay_guard=guard, now=NOW + WINDOW + timedelta(seconds=1))


def test_replay_guard_forgets_after_the_window_and_stays_bounded() -> None:
    """Keys expire after the window, and the guard never holds more than max_entries."""
    guard = ReplayGuard(timedelta(seconds=10), max_entries=3)
    assert not guard.seen("a", NOW)
    assert guard.seen("a", NOW + timedelta(seconds=9))
    assert not guard.seen("a", NOW + timedelta(seconds=11))
    for key in "bcde":
        guard.seen(key, NOW + timedelta(seconds=12))
    assert len(guard) == 3


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"sys_id": "abc"}).encode(),
        payload(sys_mod_count="three"),
        payload(sys_updated_on="22/01/2026"),
        payload(operation="merge"),
        payload(table="Incident; drop"),
    ],
)
def test_body_that_is_not_the_rules_payload_is_malformed(body: bytes) -> None:
    """A correctly signed body of another shape is refused as malformed, not half-read."""
    with pytest.raises(MalformedWebhook):
        parse(signed_headers(SECRET, body, NOW), body)


def test_without_a_secret_captures_parse_unverified() -> None:
    """secret=None (webhook parse on captured posts) skips signature and freshness checks."""
    body = payload()
    events = parse_webhook(
        {}, body, secret=None, now=NOW + timedelta(days=30), replay_window=WINDOW
    )
    assert events[0].ticket == "c537bae64f411200adf9f8e18110c76e"


@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_breaks_the_signature(position: int, flip: int) -> None:
    """Whatever single byte of the body changes, verification fails."""
    body = bytearray(payload())
    headers = signed_headers(SECRET, bytes(body), NOW)
    body[position % len(body)] ^= flip
    with pytest.raises(BadSignature):
        parse(headers, bytes(body))


def test_shipped_rule_uses_the_same_headers_and_formula() -> None:
    """The Business Rule script names the headers and the message this parser verifies."""
    script = SCRIPT.read_text()
    assert f"'{TIMESTAMP_HEADER}'" in script
    assert f"'{SIGNATURE_HEADER}'" in script
    assert "generateMac(" in script and "'HmacSHA256'" in script
    assert "timestamp + '.' + body" in script
    assert "GlideStringUtil.base64Encode(secret)" in script
    for key in (
        "table:",
        "sys_id:",
        "number:",
        "sys_mod_count:",
        "sys_updated_on:",
        "sys_updated_by:",
        "operation:",
    ):
        assert key in script
