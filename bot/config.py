"""Settings read from the environment, validated once at start-up.

Every variable is documented in the README's configuration table. A missing or malformed value stops start-up
with one line naming the variable (see `ConfigError`), so an operator never has to read a traceback.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# All patterns are used with fullmatch: `$` would also accept a trailing newline.
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
# An approver is a member (U…, W…) or a user group (S…, https://api.slack.com/methods/usergroups.users.list).
SLACK_APPROVER_ID = re.compile(r"[UWS][A-Z0-9]{2,20}")
SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,20}")
IAM_PATH = re.compile(r"/(?:[\x21-\x7E]{0,510}/)?")
IAM_NAME = re.compile(r"[\w+=,.@-]{1,128}", re.ASCII)
POLICY_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?:aws|\d{12}):policy/[\w+=,.@/-]+", re.ASCII)

DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "ec2": {
        "label": "EC2 stacks",
        "group": "Developers",
        "policies": [
            "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
            "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
        ],
        "default": True,
    },
    "route53": {
        "label": "Route53",
        "group": "Developers-Route53",
        "policies": [
            "arn:aws:iam::aws:policy/AmazonRoute53FullAccess",
            "arn:aws:iam::aws:policy/AmazonRoute53DomainsFullAccess",
        ],
        "default": False,
    },
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


# The request form lists the profiles as checkboxes, which Slack caps at 10 options
# (https://api.slack.com/reference/block-kit/block-elements#checkboxes).
MAX_PROFILES = 10
# The longest access a profile may grant (`max_days`), and the ceiling of the request form's "Access for".
MAX_ACCESS_DAYS = 3650


def approver_ids(value: Any) -> tuple[str, ...]:
    """A comma-separated string or a list of member / user group IDs, each checked."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    entries = tuple(str(item).strip() for item in items if str(item).strip())
    for entry in entries:
        if not SLACK_APPROVER_ID.fullmatch(entry):
            raise ValueError(f"{entry!r} is not a Slack member ID (U0123ABCD) or user group ID (S0123ABCD)")
    return entries


class Profile(BaseModel):
    """An access profile: one IAM group under the bot's path, the managed policies attached to it, and who
    approves it. Every key is optional but label, group and policies; an unknown key is a start-up error, so a
    new optional setting is one more field here."""

    model_config = ConfigDict(extra="forbid")

    key: str
    label: str = Field(min_length=1, max_length=75)
    group: str
    policies: list[str] = Field(min_length=1)
    default: bool = False
    # Who may decide besides the admins (member and user group IDs).
    approvers: tuple[str, ...] = ()
    # Distinct approvers a request for this profile needs (the requester never counts).
    approvals_required: int = Field(default=1, ge=1, le=10)
    # Where this profile's cards go; unset: KODING_IAM_APPROVAL_CHANNEL, else each approver's DM.
    approval_channel: str | None = None

    @field_validator("approvers", mode="before")
    @classmethod
    def _approvers(cls, value: Any) -> tuple[str, ...]:
        return approver_ids(value)

    @field_validator("approval_channel")
    @classmethod
    def _approval_channel(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not SLACK_CHANNEL_ID.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a Slack channel ID (e.g. C0123ABCD)")
        return value.strip()

    # Time-bound access: the IAM user is offboarded this many days after it was created (extensions aside).
    max_days: int | None = None

    @field_validator("max_days", mode="before")
    @classmethod
    def _max_days(cls, value: Any) -> int | None:
        if value is None:
            return None
        number = value.strip() if isinstance(value, str) else value
        if isinstance(number, str) and re.fullmatch(r"-?\d{1,6}", number):
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= MAX_ACCESS_DAYS:
            raise ValueError(f"must be a whole number of days from 1 to {MAX_ACCESS_DAYS}, not {value!r}")
        return number

    @field_validator("group")
    @classmethod
    def _group_name(cls, value: str) -> str:
        if not IAM_NAME.fullmatch(value):
            raise ValueError(f"group name {value!r} is not a valid IAM group name")
        return value

    @field_validator("policies")
    @classmethod
    def _policy_arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not POLICY_ARN.fullmatch(arn):
                raise ValueError(f"{arn!r} is not a managed policy ARN")
        return value


class Settings(BaseSettings):
    """The whole configuration; field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    slack_bot_token: SecretStr
    # Required in HTTP mode to verify every request; Socket Mode connections are authenticated by the app token.
    slack_signing_secret: SecretStr = SecretStr("")
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # The app's id (A…, on the app's Basic Information page); when set, requests for other apps are refused.
    koding_iam_app_id: str | None = None
    database_url: str = "sqlite:///koding-iam.db"
    koding_iam_admins: Annotated[tuple[str, ...], NoDecode]
    koding_iam_approval_channel: str | None = None
    koding_iam_path: str = "/koding/"
    koding_iam_permissions_boundary: str | None = None
    koding_iam_profiles: Annotated[dict[str, Profile], NoDecode] = Field(default_factory=dict)
    koding_iam_reveal_window_hours: int = Field(default=24, ge=1, le=24 * 30)
    koding_iam_request_expiry_hours: int = Field(default=72, ge=1, le=24 * 90)
    koding_iam_lease_seconds: int = Field(default=120, ge=1, le=3600)
    # Seconds a reveal waits for AWS to accept a new key (sts:GetCallerIdentity) before showing it anyway; 0: at once.
    koding_iam_key_verify_seconds: int = Field(default=20, ge=0, le=60)
    koding_iam_resume_interval_seconds: int = Field(default=60, ge=1, le=3600)
    # Key rotation policy (days), after the AWS Config rule access-keys-rotated and the CIS default of 90.
    koding_iam_rotate_after_days: int = Field(default=90, ge=1, le=3650)
    koding_iam_remind_before_days: int = Field(default=7, ge=0, le=365)
    koding_iam_remind_every_days: int = Field(default=3, ge=1, le=365)
    koding_iam_overdue_grace_days: int = Field(default=3, ge=0, le=365)
    koding_iam_auto_deactivate_after_days: int | None = Field(default=None, ge=0, le=3650)
    koding_iam_delete_after_days: int = Field(default=7, ge=1, le=365)
    koding_iam_sweep_interval_minutes: int = Field(default=5, ge=1, le=1440)
    # Key usage (bot/core/key_usage.py): how often a key's last use is read again (mid-rotation: every sweep); retiring
    # the old key once the new one is used; unused keys (CIS AWS Foundations 1.12: 45 days), deactivated after a grace.
    koding_iam_last_used_refresh_minutes: int = Field(default=60, ge=1, le=1440)
    koding_iam_retire_old_key_after_use: bool = False
    koding_iam_unused_after_days: int = Field(default=45, ge=1, le=3650)
    koding_iam_unused_auto_deactivate_days: int | None = Field(default=None, ge=0, le=3650)
    # chat.postMessage calls a minute the outbox sender allows itself for the whole workspace (Slack: "several
    # hundred per minute", besides one a second per channel); a 2,000-owner sweep takes about 2,000 ÷ this minutes.
    koding_iam_slack_posts_per_minute: int = Field(default=300, ge=1, le=6000)
    koding_iam_max_exemption_days: int = Field(default=365, ge=1, le=3650)  # how far ahead an exemption may end
    # Hours between scheduled sync scans (the first 10 minutes after start); 0: none (run `koding-iam sync` instead).
    koding_iam_sync_scan_hours: int = Field(default=24, ge=0, le=24 * 30)
    # Where after-ack work runs (bot/worker.py): `inline`, threads inside `serve`; `external`, a `koding-iam worker`
    # process. With inline, KODING_IAM_RUN_SCHEDULER=false leaves only the scheduled jobs to a worker process.
    koding_iam_worker: Literal["inline", "external"] = "inline"
    koding_iam_worker_threads: int | None = Field(default=None, ge=1, le=256)  # runs at once; unset: worker_slots
    koding_iam_worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    koding_iam_run_scheduler: bool = True
    port: int = Field(default=3000, ge=1, le=65535)
    # Threads that run Slack listeners; acknowledgements must never queue behind slow work after an ack.
    koding_iam_listener_threads: int = Field(default=32, ge=4, le=512)
    # Seconds a stopping process (SIGTERM/SIGINT) gives in-flight requests and work before it releases its leases
    # and exits; 25 fits inside the 30 s Heroku and Kubernetes wait before they kill. 0: release and exit at once.
    koding_iam_drain_seconds: int = Field(default=25, ge=0, le=3600)

    @field_validator("koding_iam_auto_deactivate_after_days", "koding_iam_unused_auto_deactivate_days", mode="before")
    @classmethod
    def _optional_days(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() in ("", "off", "none") else value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @model_validator(mode="after")
    def _signing_secret_for_http(self) -> Settings:
        if self.slack_app_token is None and not self.slack_signing_secret.get_secret_value().strip():
            raise PydanticCustomError(
                "missing", "SLACK_SIGNING_SECRET is not set", {"variable": "slack_signing_secret"}
            )
        return self

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("koding_iam_admins", mode="before")
    @classmethod
    def _admins(cls, value: Any) -> tuple[str, ...]:
        admins = approver_ids(value)
        if not admins:
            raise ValueError("must list at least one Slack member or user group ID (comma-separated, e.g. U0123ABCD)")
        return admins

    @field_validator("koding_iam_app_id")
    @classmethod
    def _app_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.fullmatch(r"A[A-Z0-9]{2,20}", value.strip()):
            raise ValueError(f"{value!r} is not a Slack app ID (e.g. A0123ABCD)")
        return value.strip()

    @field_validator("koding_iam_approval_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not SLACK_CHANNEL_ID.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a Slack channel ID (e.g. C0123ABCD)")
        return value.strip()

    @field_validator("koding_iam_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not IAM_PATH.fullmatch(value) or value == "/":
            raise ValueError("must be an IAM path that starts and ends with '/', such as /koding/ (not '/')")
        return value

    @field_validator("koding_iam_permissions_boundary")
    @classmethod
    def _boundary(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not POLICY_ARN.fullmatch(value.strip()):
            raise ValueError("must be a managed policy ARN")
        return value.strip()

    @field_validator("koding_iam_profiles", mode="before")
    @classmethod
    def _profiles(cls, value: Any) -> dict[str, Any]:
        if value in (None, "", {}):
            value = DEFAULT_PROFILES
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON object ({exc.msg})") from None
        if not isinstance(value, dict) or not value:
            raise ValueError("must be a non-empty JSON object of profiles")
        if len(value) > MAX_PROFILES:
            raise ValueError(f"at most {MAX_PROFILES} profiles: the request form shows them as checkboxes")
        profiles: dict[str, Any] = {}
        for key, spec in value.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", key):
                raise ValueError(f"profile key {key!r} must be lower-case letters, digits, '-' or '_'")
            if isinstance(spec, Profile):
                spec = spec.model_dump()
            if not isinstance(spec, dict):
                raise ValueError(f"profile {key!r} must be an object with label, group and policies")
            profiles[key] = {**spec, "key": key}
        return profiles

    @field_validator("koding_iam_profiles")
    @classmethod
    def _profile_groups_unique(cls, value: dict[str, Profile]) -> dict[str, Profile]:
        groups = [profile.group.lower() for profile in value.values()]
        if len(groups) != len(set(groups)):
            raise ValueError("two profiles name the same group")
        if not any(profile.default for profile in value.values()):
            first = next(iter(value.values()))
            value[first.key] = first.model_copy(update={"default": True})
        return value

    @model_validator(mode="after")
    def _approvals_possible(self) -> Settings:
        """A profile cannot need more approvals than it has possible approvers (the admins count too). A user
        group's size is unknown until Slack is asked, so a group counts as one: only a policy that can never be
        met stops start-up; a group too small at run time leaves the request pending until it expires."""
        for profile in self.profiles.values():
            possible = len(set(self.koding_iam_admins) | set(profile.approvers))
            if profile.approvals_required > possible:
                raise PydanticCustomError(
                    "approvals",
                    "profile '{profile}', field 'approvals_required': {required} is more than the {possible} possible "
                    "approver(s) (the admins and the profile's approvers; a user group counts as one)",
                    {
                        "variable": "koding_iam_profiles",
                        "profile": profile.key,
                        "required": profile.approvals_required,
                        "possible": possible,
                    },
                )
        return self

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def profiles(self) -> dict[str, Profile]:
        return self.koding_iam_profiles

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(self.koding_iam_admins)

    @property
    def database_is_default(self) -> bool:
        return self.database_url == "sqlite:///koding-iam.db"


def normalise_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` form and pick the psycopg 3 driver for PostgreSQL."""
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not re.match(r"^(sqlite|postgresql\+psycopg)://", url):
        raise ValueError("must be a sqlite:/// or postgres(ql):// URL")
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        if profile_lines := _profile_mistakes(exc):
            raise ConfigError("\n".join(profile_lines)) from None
        error = exc.errors()[0]
        context = error.get("ctx") or {}
        if context.get("variable"):
            variable = str(context["variable"]).upper()
        else:
            variable = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        if error["type"] == "missing" and len(error["loc"]) <= 1:
            raise ConfigError(f"{variable} is not set (see the configuration table in README.md)") from None
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{variable} is malformed: {message}") from None


def _profile_mistakes(exc: ValidationError) -> list[str]:
    """One line per mistake inside a profile of KODING_IAM_PROFILES, naming the profile and the field."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        if len(loc) < 3 or loc[0] != "koding_iam_profiles":
            continue
        profile, field = loc[1], loc[2]
        if error["type"] == "extra_forbidden":
            message = "unknown key (known: " + ", ".join(sorted(set(Profile.model_fields) - {"key"})) + ")"
        elif error["type"] == "missing":
            message = "is missing"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"KODING_IAM_PROFILES is malformed: profile {profile!r}, field {field!r}: {message}")
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
