"""Reading what a managed policy grants, mixed into `IamGateway` (bot/aws_iam.py): its description (GetPolicy,
https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetPolicy.html) and the services its default version
names (GetPolicyVersion). Read once per policy and kept for the process: the approval card shows them.

No boto3 here: every call goes through the gateway's `_call`, so errors are translated the same way.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PolicySummary:
    description: str | None
    services: tuple[str, ...]  # action prefixes in the default version ("ec2", "iam"…), "*" for every service


class PolicyReadCalls:
    _policy_cache: dict[str, PolicySummary | None]
    _policy_lock: threading.Lock

    def _call(self, operation: str, *, eventual: bool = False, fast: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - IamGateway provides it

    def policy_summary(self, arn: str) -> PolicySummary | None:
        """The policy's description and services, cached for the process; None when IAM could not say (not
        cached, so a later card tries again). Call outside a database transaction."""
        if not hasattr(self, "_policy_cache"):
            self._policy_cache, self._policy_lock = {}, threading.Lock()
        with self._policy_lock:
            if arn in self._policy_cache:
                return self._policy_cache[arn]
        from bot.aws_iam import AwsError  # the gateway's module; imported late to keep imports pointing down

        try:
            policy = self._call("GetPolicy", PolicyArn=arn)["Policy"]
            version = self._call("GetPolicyVersion", PolicyArn=arn, VersionId=policy["DefaultVersionId"])
        except AwsError:
            return None
        summary = PolicySummary(policy.get("Description") or None, _services(version["PolicyVersion"]["Document"]))
        with self._policy_lock:
            self._policy_cache[arn] = summary
        return summary


def _services(document: Any) -> tuple[str, ...]:
    """The service prefixes of the Allow statements' actions (IAM returns the document URL-encoded)."""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", [])
    found: set[str] = set()
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            found.add("*" if action == "*" else action.split(":", 1)[0])
    return tuple(sorted(found))
