"""How the pages put moments, durations, people and systems into words."""

from __future__ import annotations

from datetime import timedelta

from sync.console.wording import ago, person, span, tone, until, when
from tests.sync.console.seed import NOW


def test_durations_in_their_two_largest_units() -> None:
    """A duration reads in its two largest units, and a moment as ago, in, or late."""
    assert span(timedelta(seconds=45)) == "45 s"
    assert span(timedelta(hours=3, minutes=12, seconds=5)) == "3 h 12 min"
    assert span(timedelta(days=2, hours=4)) == "2 days 4 h"
    assert ago(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert until(NOW + timedelta(hours=1), NOW) == "in 1 h 0 min"
    assert until(NOW - timedelta(minutes=10), NOW) == "10 min late"
    assert when(NOW) == "2026-03-11 15:00 UTC" and when(None) == "-"


def test_people_and_systems() -> None:
    """An opaque person id is shortened; systems take a tone by registry place, channels one."""
    assert person("a09bf3a9" * 4) == "user a09bf3a9…"
    assert person("lee.l1") == "lee.l1" and person(None) == "-"
    assert (tone("jira"), tone("servicenow"), tone("email")) == ("sys-0", "sys-1", "sys-channel")
