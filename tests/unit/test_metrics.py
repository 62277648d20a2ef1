"""bot/metrics.py without Slack: label values stay in their fixed sets, AWS retries and failed jobs are counted."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.aws_iam import Backoff, ConcurrentModification, IamGateway
from bot.metrics import Metrics, surface_of


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_surfaces_and_outcomes_are_fixed_words() -> None:
    assert surface_of({"command": "/koding-iam", "text": "anything"}) == "slash_command"
    assert surface_of({"type": "block_actions"}) == "block_action"
    assert surface_of({"type": "view_submission"}) == "view_submission"
    assert surface_of({"type": "event_callback", "event": {"type": "user_change"}}) == "event"
    assert surface_of({"type": "alice's free text"}) == "other"
    assert surface_of("not a body") == "other"
    metrics = Metrics()
    metrics.provisioning_ended("koding-alice")  # never a label: counted as "other"
    metrics.provisioning_ended("provisioned")
    assert sample(metrics, "koding_iam_provisioning_runs_total", outcome="other") == 1
    assert sample(metrics, "koding_iam_provisioning_runs_total", outcome="provisioned") == 1
    assert sample(metrics, "koding_iam_provisioning_runs_total", outcome="koding-alice") is None


class _FlakyIam:
    """get_user: ConcurrentModification once, then an answer botocore says it retried twice to get."""

    def __init__(self) -> None:
        self.calls = 0

    def get_user(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            error = {"Error": {"Code": "ConcurrentModification", "Message": "busy"}, "ResponseMetadata": {}}
            raise ClientError(error, "GetUser")  # type: ignore[arg-type]
        user = {"UserName": "koding-alice", "Arn": "arn:aws:iam::123456789012:user/koding-alice", "Path": "/"}
        return {"User": user, "ResponseMetadata": {"RetryAttempts": 2}}


def test_aws_retries_are_counted_by_reason() -> None:
    metrics = Metrics()
    gateway = IamGateway(_FlakyIam(), backoff=Backoff(sleep=lambda _: None))
    gateway.on_retry = metrics.aws_retried
    assert gateway.get_user("koding-alice") is not None
    assert sample(metrics, "koding_iam_aws_retries_total", reason="concurrent_modification") == 1
    assert sample(metrics, "koding_iam_aws_retries_total", reason="botocore") == 2
    assert sample(metrics, "koding_iam_aws_retries_total", reason="eventual_consistency") == 0


def test_a_failing_job_is_timed_and_counted() -> None:
    metrics = Metrics()
    with pytest.raises(ConcurrentModification), metrics.timed_job("rotation-sweep"):
        raise ConcurrentModification("ConcurrentModification", "busy", "UpdateAccessKey")
    assert sample(metrics, "koding_iam_job_failures_total", job="rotation-sweep") == 1
    assert sample(metrics, "koding_iam_job_duration_seconds_count", job="rotation-sweep") == 1


def test_each_background_loop_counts_its_looks_and_starts_at_zero() -> None:
    """koding_iam_looks_total: a worker or outbox sender that stopped looking for work shows as a flat line."""
    metrics = Metrics()
    assert sample(metrics, "koding_iam_looks_total", loop="worker") == 0
    assert sample(metrics, "koding_iam_looks_total", loop="outbox") == 0
    metrics.looked("worker")
    metrics.looked("worker")
    metrics.looked("outbox")
    metrics.looked("alice's loop")  # never a label: counted as "other"
    assert sample(metrics, "koding_iam_looks_total", loop="worker") == 2
    assert sample(metrics, "koding_iam_looks_total", loop="outbox") == 1
    assert sample(metrics, "koding_iam_looks_total", loop="other") == 1
