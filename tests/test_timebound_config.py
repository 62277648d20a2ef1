"""A profile's `max_days`: a positive whole number of days, or start-up stops with one line naming the profile and
the field (through `koding-iam serve`, as an operator meets it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, load_settings
from tests.test_cli import clean_env, run

POLICY = "arn:aws:iam::aws:policy/ReadOnlyAccess"


def profiles(**route53: Any) -> str:
    return json.dumps(
        {
            "ec2": {"label": "EC2", "group": "Developers", "policies": [POLICY], "max_days": 30},
            "route53": {"label": "Route53", "group": "Developers-Route53", "policies": [POLICY], **route53},
        }
    )


@pytest.mark.parametrize("bad", [0, -7, "0", "ten", 2.5, True, 10_000])
def test_a_non_positive_or_malformed_max_days_stops_start_up_naming_profile_and_field(
    tmp_path: Path, bad: object
) -> None:
    env = {
        **clean_env(),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "KODING_IAM_ADMINS": "U1AAA",
        "KODING_IAM_PROFILES": profiles(max_days=bad),
    }
    result = run("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("koding-iam: KODING_IAM_PROFILES is malformed: profile 'route53', field 'max_days': ")
    assert not list(tmp_path.iterdir())  # nothing was created


def test_max_days_is_optional_and_read_as_days() -> None:
    base = {"slack_bot_token": "xoxb-1", "slack_signing_secret": "s", "koding_iam_admins": "U1AAA"}
    settings = load_settings(**base, koding_iam_profiles=profiles(max_days="14"))
    assert (settings.profiles["ec2"].max_days, settings.profiles["route53"].max_days) == (30, 14)
    assert load_settings(**base, koding_iam_profiles=profiles()).profiles["route53"].max_days is None
    assert all(p.max_days is None for p in load_settings(**base).profiles.values())  # the README's defaults
    with pytest.raises(ConfigError) as caught:
        load_settings(**base, koding_iam_profiles=profiles(max_days=0))
    assert "profile 'route53', field 'max_days'" in str(caught.value) and "\n" not in str(caught.value)
