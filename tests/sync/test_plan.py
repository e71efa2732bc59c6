"""Tests of the pure sync planner."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.model import (
    Attachment,
    Comment,
    Person,
    Priority,
    Ref,
    Status,
    System,
    Ticket,
    Visibility,
)
from sync.pipeline.markers import Marker, find_marker, strip_marker, with_marker
from sync.pipeline.plan import Plan, SyncRules, apply_writes, comparable, plan

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FIELDS = frozenset({"summary", "description", "status", "priority", "labels", "assignee"})
RULES = SyncRules(writable={System.JIRA: FIELDS, System.SERVICENOW: FIELDS})


def jira(**kw: object) -> Ticket:
    base: dict[str, object] = {
        "ref": Ref(system=System.JIRA, id="10001", key="DS-12"),
        "summary": "Login fails",
        "status": Status.IN_PROGRESS,
        "priority": Priority.P2,
        "updated": T0,
    }
    base.update(kw)
    return Ticket.model_validate(base)


def snow(**kw: object) -> Ticket:
    base: dict[str, object] = {
        "ref": Ref(system=System.SERVICENOW, id="a1b2", key="INC0010001"),
        "summary": "Login fails",
        "status": Status.IN_PROGRESS,
        "priority": Priority.P2,
        "updated": T0,
    }
    base.update(kw)
    return Ticket.model_validate(base)


def apply_plan(p: Plan, a: Ticket, b: Ticket) -> tuple[Ticket, Ticket]:
    """Apply a plan the way the engine does, to in-memory tickets."""
    out = []
    for t in (a, b):
        t = apply_writes(t, p.writes)
        new_comments = tuple(
            Comment(
                id=f"copy-{c.comment_id}",
                body=with_marker(c.body, c.marker),
                visibility=c.visibility,
            )
            for c in p.comments_to(t.ref.system)
        )
        new_atts = tuple(c.attachment for c in p.attachments if c.target is t.ref.system)
        out.append(
            t.model_copy(
                update={
                    "comments": t.comments + new_comments,
                    "attachments": t.attachments + new_atts,
                }
            )
        )
    return out[0], out[1]


def test_one_side_change_flows_to_the_other() -> None:
    """A field changed only in Jira is written to ServiceNow with its old value recorded."""
    snap_j, snap_s = jira(), snow()
    p = plan(jira(summary="Login fails on SSO"), snow(), snap_j, snap_s, RULES)
    assert [(w.system, w.field, w.old, w.new) for w in p.writes] == [
        (System.SERVICENOW, "summary", "Login fails", "Login fails on SSO")
    ]
    assert p.conflicts == ()


def test_echo_of_our_own_write_plans_nothing() -> None:
    """Re-reading a side that equals its snapshot (our own write coming back) writes nothing."""
    snap_j, snap_s = jira(summary="X"), snow(summary="X")
    assert plan(jira(summary="X"), snow(summary="X"), snap_j, snap_s, RULES).empty


def test_newest_wins_conflict_records_loser() -> None:
    """Both sides changed a jointly owned field: the newer record wins, the loser is recorded."""
    p = plan(
        jira(priority=Priority.P1, updated=T0 + timedelta(minutes=5)),
        snow(priority=Priority.P3, updated=T0 + timedelta(minutes=2)),
        jira(),
        snow(),
        RULES,
    )
    assert [(w.system, w.new) for w in p.writes] == [(System.SERVICENOW, Priority.P1)]
    (c,) = p.conflicts
    assert (c.winner, c.loser, c.loser_value, c.rule) == (
        System.JIRA,
        System.SERVICENOW,
        Priority.P3,
        "newest-wins",
    )


def test_owner_wins_conflict_even_when_older() -> None:
    """A field owned by ServiceNow keeps ServiceNow's value even if Jira changed it later."""
    rules = SyncRules(
        writable=RULES.writable, owner=lambda f: "servicenow" if f == "status" else "both"
    )
    p = plan(
        jira(status=Status.RESOLVED, updated=T0 + timedelta(minutes=9)),
        snow(status=Status.ON_HOLD, updated=T0 + timedelta(minutes=1)),
        jira(),
        snow(),
        rules,
    )
    assert [(w.system, w.field, w.new) for w in p.writes] == [
        (System.JIRA, "status", Status.ON_HOLD)
    ]
    assert p.conflicts[0].loser_value == Status.RESOLVED
    assert p.conflicts[0].rule == "owner"


def test_unchanged_difference_is_repaired_only_when_asked() -> None:
    """A difference neither side made since the snapshot is left alone unless repairing."""
    a, b = jira(summary="A"), snow(summary="B")
    assert plan(a, b, a, b, RULES).empty
    fixed = plan(a, b, a, b, RULES, repair=True)
    assert [(w.system, w.new) for w in fixed.writes] == [(System.SERVICENOW, "A")]


def test_non_owner_change_is_put_back() -> None:
    """A change on the side that does not own the field is overwritten from the owner."""
    rules = SyncRules(writable=RULES.writable, owner=lambda f: "jira")
    p = plan(snow(summary="typo"), jira(), snow(), jira(), rules)
    assert [(w.system, w.new) for w in p.writes] == [(System.SERVICENOW, "Login fails")]
    assert p.conflicts[0].loser is System.SERVICENOW


def test_both_sides_same_new_value_is_no_write() -> None:
    """Both sides made the same change: nothing to write and no conflict."""
    p = plan(jira(summary="New"), snow(summary="New"), jira(), snow(), RULES)
    assert p.empty and p.conflicts == ()


def test_field_not_writable_on_target_is_skipped() -> None:
    """A change is not planned towards a side the mapping does not write that field on."""
    rules = SyncRules(writable={System.JIRA: FIELDS, System.SERVICENOW: frozenset({"summary"})})
    assert plan(jira(priority=Priority.P1), snow(), jira(), snow(), rules).empty


def test_people_compared_by_email_across_systems() -> None:
    """The same person with different account ids on each side is not a difference."""
    a = jira(assignee=Person(id="5b10ac", name="Ana", email="ana@example.com"))
    b = snow(assignee=Person(id="681ccaf9", name="Ana Lopez", email="ANA@example.com"))
    assert plan(a, b, a, b, RULES).empty


def test_labels_compared_as_sets() -> None:
    """Label order does not make a change."""
    a, b = jira(labels=("x", "y")), snow(labels=("y", "x"))
    assert plan(a, b, jira(), snow(), RULES).empty


def test_comments_keep_visibility_and_skip_marked_copies() -> None:
    """Public stays public, internal stays internal, and our own copies are never mirrored."""
    copy_body = with_marker("from snow", Marker(System.SERVICENOW, "INC0010001", "j1"))
    a = jira(
        comments=(
            Comment(id="1", body="public words", visibility=Visibility.PUBLIC),
            Comment(id="2", body="internal words", visibility=Visibility.INTERNAL),
            Comment(id="3", body=copy_body, visibility=Visibility.PUBLIC),
        )
    )
    b = snow(comments=(Comment(id="j1", body="from snow", visibility=Visibility.PUBLIC),))
    p = plan(a, b, a, b, RULES)
    assert [(c.target, c.comment_id, c.visibility) for c in p.comments] == [
        (System.SERVICENOW, "1", Visibility.PUBLIC),
        (System.SERVICENOW, "2", Visibility.INTERNAL),
    ]
    assert p.comments[1].marker.text() == "[escalation-sync origin=jira:DS-12:2]"


def test_withheld_engineering_comment_is_copied_as_an_internal_note() -> None:
    """A public Jira comment with an estimate reaches ServiceNow as a work note; other public
    comments, and ServiceNow's own, keep their visibility."""
    rules = replace(RULES, withhold={System.JIRA: r"(?i)\beta\b"})
    a = jira(
        comments=(
            Comment(id="1", body="ETA: Friday", visibility=Visibility.PUBLIC),
            Comment(id="2", body="Root cause found", visibility=Visibility.PUBLIC),
        )
    )
    b = snow(comments=(Comment(id="s1", body="eta please?", visibility=Visibility.PUBLIC),))
    p = plan(a, b, a, b, rules)
    assert sorted((c.comment_id, c.visibility) for c in p.comments) == [
        ("1", Visibility.INTERNAL),
        ("2", Visibility.PUBLIC),
        ("s1", Visibility.PUBLIC),
    ]


def test_comment_links_from_store_prevent_second_copy() -> None:
    """A comment recorded as mirrored in the store is not planned again."""
    a = jira(comments=(Comment(id="1", body="hi", visibility=Visibility.PUBLIC),))
    p = plan(a, snow(), a, snow(), RULES, comment_links={(System.JIRA, "1")})
    assert p.comments == ()


def test_integration_user_comments_are_not_a_source() -> None:
    """Notes the integration user wrote itself are never mirrored."""
    bot = Person(id="svc-sync", name="sync bot")
    a = jira(comments=(Comment(id="1", body="note", author=bot),))
    rules = SyncRules(writable=RULES.writable, ignore_authors=frozenset({"svc-sync"}))
    assert plan(a, snow(), a, snow(), rules).empty


def test_attachments_missing_on_other_side_are_copied_once() -> None:
    """An attachment absent on the other side (by name and size) is planned for copy."""
    log = Attachment(id="900", filename="app.log", size=12)
    a = jira(attachments=(log,))
    b = snow(attachments=(Attachment(id="zz", filename="shot.png", size=3),))
    p = plan(a, b, a, b, RULES)
    assert [(c.target, c.attachment.filename) for c in p.attachments] == [
        (System.SERVICENOW, "app.log"),
        (System.JIRA, "shot.png"),
    ]


def test_create_when_no_pair() -> None:
    """With no paired record the plan asks to create one carrying the source's fields."""
    a = jira(comments=(Comment(id="1", body="c", visibility=Visibility.PUBLIC),))
    p = plan(a, None, None, None, RULES)
    assert p.create_in is System.SERVICENOW
    assert {w.field for w in p.writes} == {"summary", "status", "priority"}
    assert len(p.comments) == 1


def test_marker_round_trip() -> None:
    """A marked body yields its marker back, and stripping gives the original text."""
    m = Marker(System.SERVICENOW, "INC0010001", "abc123")
    body = with_marker("hello", m)
    assert find_marker(body) == m
    assert strip_marker(body) == "hello"
    assert with_marker(body, m) == body
    assert find_marker("no marker here") is None


_text = st.sampled_from(["a", "b", "c", ""])
_prio = st.sampled_from(list(Priority))
_status = st.sampled_from(list(Status))
_labels = st.lists(st.sampled_from(["x", "y", "ESCALATION"]), max_size=3).map(tuple)
_when = st.integers(min_value=0, max_value=3).map(lambda m: T0 + timedelta(minutes=m))
_owner = st.sampled_from(["both", "jira", "servicenow"])


@st.composite
def _side(draw: st.DrawFn, system: System) -> Ticket:
    make = jira if system is System.JIRA else snow
    n = draw(st.integers(0, 2))
    prefix = "j" if system is System.JIRA else "s"
    return make(
        summary=draw(_text),
        priority=draw(_prio),
        status=draw(_status),
        labels=draw(_labels),
        updated=draw(_when),
        comments=tuple(
            Comment(
                id=f"{prefix}{i}",
                body=f"body {i}",
                visibility=draw(st.sampled_from(list(Visibility))),
            )
            for i in range(n)
        ),
        attachments=tuple(
            Attachment(id=f"{prefix}a{i}", filename=f"{prefix}{i}.log", size=i)
            for i in range(draw(st.integers(0, 2)))
        ),
    )


@settings(max_examples=300, deadline=None)
@given(
    a=_side(System.JIRA),
    b=_side(System.SERVICENOW),
    snap_a=st.none() | _side(System.JIRA),
    snap_b=st.none() | _side(System.SERVICENOW),
    owner=_owner,
    from_a=st.booleans(),
    repair=st.booleans(),
)
def test_planning_again_after_applying_is_empty(
    a: Ticket,
    b: Ticket,
    snap_a: Ticket | None,
    snap_b: Ticket | None,
    owner: str,
    from_a: bool,
    repair: bool,
) -> None:
    """Idempotency: applying a plan and planning again (either side as source) plans nothing."""
    rules = SyncRules(writable=RULES.writable, owner=lambda _f: owner)
    src, tgt, ssrc, stgt = (a, b, snap_a, snap_b) if from_a else (b, a, snap_b, snap_a)
    p = plan(src, tgt, ssrc, stgt, rules, repair=repair)
    src2, tgt2 = apply_plan(p, src, tgt)
    for first in (True, False):
        again = (
            plan(src2, tgt2, src2, tgt2, rules) if first else plan(tgt2, src2, tgt2, src2, rules)
        )
        assert again.empty, again
    if repair:
        # After a repairing pass the sides agree on every synced field.
        for name in ("summary", "priority", "status", "labels"):
            assert comparable(name, getattr(src2, name)) == comparable(name, getattr(tgt2, name))


def test_field_read_on_one_side_only_is_never_synced() -> None:
    """A field the other side does not read cannot wipe the side that has it."""
    rules = SyncRules(
        writable={System.JIRA: FIELDS, System.SERVICENOW: FIELDS | {"category"}},
        mapped={System.JIRA: FIELDS, System.SERVICENOW: FIELDS | {"category"}},
    )
    s = snow(category="network")
    assert plan(s, jira(), snow(), jira(), rules).empty
