"""`/koding-iam` answers admin-only subcommands in its acknowledgement, so "is this an admin" is decided before
ack(): a cache miss asks Slack once with a short timeout and never waits out a rate limit's Retry-After."""

from __future__ import annotations

import time

from bot.devtools.sandbox import Sandbox


def test_a_rate_limited_lookup_does_not_hold_the_ack(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    sb.standin.fail_next("users.info", retry_after=30)  # Slack: wait 30 s; a retrying client would, past 3 s
    started = time.monotonic()
    response, _ = sb.driver.command("UADMIN1", "list")
    took = time.monotonic() - started
    assert response.status == 200 and took < 2.5, took
    assert "koding-iam users" not in response.text  # not shown to someone Slack could not confirm

    # The next command asks again (nothing was cached from the failed lookup) and is answered as an admin.
    response, _ = sb.driver.command("UADMIN1", "list")
    assert "koding-iam users" in response.text


def test_a_cached_admin_costs_no_slack_call_before_the_ack(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    sb.driver.command("UADMIN1", "list")
    looked_up = len(sb.standin.calls_to("users.info"))
    response, _ = sb.driver.command("UADMIN1", "list")
    assert "koding-iam users" in response.text and len(sb.standin.calls_to("users.info")) == looked_up
