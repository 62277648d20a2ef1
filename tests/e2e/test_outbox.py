"""The outbox: Slack surfaces marked changed in the database and delivered after commit by one sender per surface,
drawn from the database (coalesced), paced by Slack's tiers, retried with back-off, handed over at a stop."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from bot.core import outbox
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.devtools.slack_wire import RateLimit
from bot.lifecycle import release_leases
from bot.slack import home, ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer, Rate
from models import OutboxEntry
from tests.e2e.flow_steps import card, click, submit_request


def entry(sb: Sandbox, kind: str, subject: str) -> OutboxEntry | None:
    with session_scope(sb.services.session_factory) as session:
        return session.get(OutboxEntry, (kind, subject))


def test_a_burst_of_changes_publishes_each_home_once_with_the_final_state(sandbox: Sandbox) -> None:
    """Approval and provisioning mark the requester's and both admins' tabs changed several times; with the sender
    held back until the burst is over, each tab is published exactly once, showing the outcome."""
    submit_request(sandbox, "UALICE")
    sandbox.wait_idle()  # the request's cards and receipt are out (through the outbox too)
    sandbox.outbox.pause()
    publishes_before = len(sandbox.standin.calls_to("views.publish"))
    click(sandbox, "UADMIN1", ids.APPROVE, card(sandbox))
    assert len(sandbox.standin.calls_to("views.publish")) == publishes_before
    marks = entry(sandbox, outbox.HOME, "UADMIN1")
    assert marks is not None and marks.version > marks.delivered_version  # behind: marked, not yet published

    updates_before = len(sandbox.standin.calls_to("chat.update"))
    sender = OutboxSender(sandbox.services)
    assert sender.wait_idle() == 5  # three tabs, the request's cards and the Reveal DM (the approved notice waits)
    published = [c.body["user_id"] for c in sandbox.standin.calls_to("views.publish")[publishes_before:]]
    assert sorted(published) == ["UADMIN1", "UADMIN2", "UALICE"]
    # Both copies of the card (one per admin's DM) were updated once each, to their final state.
    updates = sandbox.standin.calls_to("chat.update")[updates_before:]
    assert len(updates) == 2 and all("Provisioned" in c.raw or "provisioned" in c.raw for c in updates)
    alice = str(sandbox.standin.published_home("UALICE"))
    assert "koding-ualice" in alice and "Reveal" in alice
    assert sender.wait_idle() == 0  # caught up: nothing is drawn again


def test_a_change_made_while_a_tab_is_being_drawn_is_drawn_again(sandbox: Sandbox) -> None:
    sandbox.outbox.pause()
    services = sandbox.services
    sender = OutboxSender(services)
    home.refresh(services, "UALICE")
    drawn: list[str] = []
    real_view = home.home_view_in  # the sender draws a batch's tabs in one session

    def draw_then_change(svc, session, user_id, **kw):  # type: ignore[no-untyped-def]
        view = real_view(svc, session, user_id, **kw)
        drawn.append(user_id)
        if len(drawn) == 1:  # a flow marks the tab again while the first drawing is on its way to Slack
            home.refresh(services, "UALICE")
        return view

    home.home_view_in = draw_then_change  # type: ignore[assignment]
    try:
        assert sender.wait_idle() == 2
    finally:
        home.home_view_in = real_view  # type: ignore[assignment]
    assert drawn == ["UALICE", "UALICE"]
    marked = entry(sandbox, outbox.HOME, "UALICE")
    assert marked is not None and marked.delivered_version == marked.version == 2


def test_two_senders_never_draw_the_same_tab_at_once(sandbox: Sandbox) -> None:
    """Two processes' senders on one database: each due tab is claimed by exactly one of them."""
    sandbox.outbox.pause()
    other = sandbox.make_services(sandbox.settings)
    users = [f"UMEMBER{i:03d}" for i in range(40)]
    home.refresh(sandbox.services, *users)
    senders = [OutboxSender(sandbox.services), OutboxSender(other)]
    start = threading.Barrier(2)

    def run(sender: OutboxSender) -> None:
        start.wait()
        sender.wait_idle()

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    published = [c.body["user_id"] for c in sandbox.standin.calls_to("views.publish")]
    assert sorted(published) == users  # each exactly once
    assert senders[0].delivered + senders[1].delivered == 40


def test_a_refused_delivery_backs_off_and_a_stop_hands_claims_over(sandbox: Sandbox) -> None:
    sandbox.outbox.pause()
    services = sandbox.services
    sandbox.standin.fail_next("views.publish", error="fatal_error")  # Slack's answer to a transient fault
    home.refresh(services, "UALICE")
    sender = OutboxSender(services)
    assert sender.wait_idle() == 1 and sender.failures == 1
    failed = entry(sandbox, outbox.HOME, "UALICE")
    assert failed is not None and failed.attempts == 1 and failed.delivered_version == 0
    assert failed.due_at > services.clock() and failed.claimed_by is None
    assert sender.wait_idle() == 0  # not due again before its back-off

    # A process that stops while holding a claim releases it by ownership: another sender takes it at once.
    with session_scope(services.session_factory) as session:
        session.get(OutboxEntry, (outbox.HOME, "UALICE")).due_at = services.clock() - timedelta(seconds=1)  # type: ignore[union-attr]
    claims = outbox.claim_due(services.session_factory, owner=services.owner, now=services.clock(), seconds=120)
    assert [c.subject for c in claims] == ["UALICE"]
    other = sandbox.make_services(sandbox.settings)
    assert outbox.claim_due(other.session_factory, owner=other.owner, now=other.clock(), seconds=120) == []
    assert release_leases(services.session_factory, services.owner).surfaces == 1
    assert OutboxSender(other).wait_idle() == 1
    assert sandbox.standin.published_home("UALICE") is not None


def test_the_sender_paces_itself_under_the_tier_so_slack_never_answers_429(sandbox: Sandbox) -> None:
    """A tier made ten times faster with a small burst (600 a minute, 5 at once) against a sender paced a tenth
    under it: 40 tabs go out with no 429 (the next test shows the same burst unpaced meets 429s)."""
    sandbox.outbox.pause()
    sandbox.standin.set_rate_limit("views.publish", RateLimit(per_minute=600, burst=5))
    home.refresh(sandbox.services, *[f"UMEMBER{i:03d}" for i in range(40)])
    sender = OutboxSender(sandbox.services, pacer=Pacer({"views.publish": Rate(per_minute=540, burst=4)}))
    assert sender.wait_idle() == 40
    assert sandbox.standin.rate_limited == []
    assert len(sandbox.standin.calls_to("views.publish")) == 40


def test_an_unpaced_sender_would_have_met_429s(sandbox: Sandbox) -> None:
    """A burst without pacing: Slack answers 429, so the pacing above is what kept it away. (A tier of one a second
    after a burst of 5: 12 tabs sent as fast as the database lets them pass it however slow a loaded machine is.)"""
    sandbox.outbox.pause()
    sandbox.standin.set_rate_limit("views.publish", RateLimit(per_minute=60, burst=5))
    home.refresh(sandbox.services, *[f"UMEMBER{i:03d}" for i in range(12)])
    sender = OutboxSender(sandbox.services, pacer=Pacer({}))
    sender.wait_idle()
    assert sandbox.standin.rate_limited != []


def test_surfaces_are_marked_in_one_order_and_counted(sandbox: Sandbox) -> None:
    sandbox.outbox.pause()
    home.refresh(sandbox.services, "UB", "UA", admins=True)
    with session_scope(sandbox.services.session_factory) as session:
        subjects = session.scalars(select(OutboxEntry.subject).order_by(OutboxEntry.subject)).all()
        assert list(subjects) == ["UA", "UADMIN1", "UADMIN2", "UB"]
        assert outbox.depth(session).behind == 4


def test_metrics_show_how_far_slack_is_behind_and_what_was_delivered(sandbox: Sandbox) -> None:
    from tests.e2e.test_metrics import scrape, value

    sandbox.outbox.pause()
    home.refresh(sandbox.services, "UA", "UB", "UC")
    _, held = scrape(sandbox)
    assert value(held, "koding_iam_outbox_behind") == 3
    assert value(held, "koding_iam_outbox_oldest_seconds") >= 0
    sandbox.outbox.resume()
    sandbox.wait_idle()
    _, caught_up = scrape(sandbox)
    assert value(caught_up, "koding_iam_outbox_behind") == 0
    assert value(caught_up, "koding_iam_outbox_oldest_seconds") == 0
    assert value(caught_up, "koding_iam_outbox_deliveries_total", kind="home", result="delivered") == 3


def test_a_batch_takes_few_slowly_paced_surfaces_so_a_message_marked_after_them_is_not_kept_waiting(
    sandbox: Sandbox,
) -> None:
    """Six requests' cards are due before a Reveal DM: uncapped, a batch of five is all cards (the DM waits for
    their paced updates); capped at two cards a batch, the DM goes in the first batch, oldest first."""
    sandbox.outbox.pause()
    factory = sandbox.services.session_factory
    now = sandbox.services.clock()
    with session_scope(factory) as session:
        for request_id in range(1, 7):
            outbox.touch(session, outbox.CARDS, str(request_id), now=now)
        outbox.touch(session, outbox.REVEAL, "42", now=now + timedelta(seconds=1))
    later = now + timedelta(seconds=2)

    def claimed(owner: str, **caps: int) -> list[tuple[str, str]]:
        claims = outbox.claim_due(factory, owner=owner, now=later, seconds=60, limit=5, caps=caps)
        return [(claim.kind, claim.subject) for claim in claims]

    assert claimed("a", cards=2) == [(outbox.CARDS, "1"), (outbox.CARDS, "2"), (outbox.REVEAL, "42")]
    assert claimed("b", cards=2) == [(outbox.CARDS, "3"), (outbox.CARDS, "4")]
    assert claimed("c") == [(outbox.CARDS, "5"), (outbox.CARDS, "6")]
    assert claimed("d") == []
