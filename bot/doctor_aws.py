"""Doctor's AWS checks: the identity (`sts:GetCallerIdentity`) and the IAM permissions the bot's policy grants,
simulated on the bot's own principal (`iam:SimulatePrincipalPolicy`) against resources under KODING_IAM_PATH."""

from __future__ import annotations

from bot.aws_iam import AccessDenied, AwsError, IamGateway
from bot.config import Settings
from bot.doctor_checks import CheckResult, Status

# The IAM actions of docs/iam-policy.json, by the resource each is authorized against (a test keeps them equal).
USER_ACTIONS = (
    "iam:CreateUser",
    "iam:TagUser",
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListGroupsForUser",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetLoginProfile",
    "iam:ListMFADevices",
    "iam:ListUserPolicies",
    "iam:ListAttachedUserPolicies",
    "iam:ListSSHPublicKeys",
    "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:DeleteLoginProfile",
    "iam:DeactivateMFADevice",
    "iam:DeleteSigningCertificate",
    "iam:DeleteSSHPublicKey",
    "iam:DeleteServiceSpecificCredential",
    "iam:DeleteUserPolicy",
    "iam:DetachUserPolicy",
    "iam:DeleteUser",
)
# IAM authorizes AddUserToGroup and RemoveUserFromGroup against the group ARN.
GROUP_ACTIONS = (
    "iam:CreateGroup",
    "iam:GetGroup",
    "iam:ListAttachedGroupPolicies",
    "iam:AttachGroupPolicy",
    "iam:AddUserToGroup",
    "iam:RemoveUserFromGroup",
)
ACCOUNT_WIDE_USER_ACTIONS = ("iam:GetUser",)  # name clashes anywhere in the account
MFA_ACTIONS = ("iam:DeleteVirtualMFADevice",)  # a virtual device's ARN is mfa/NAME, whatever its user's path
UNSCOPED_ACTIONS = ("iam:ListUsers",)
SELF_CHECK_ACTIONS = ("sts:GetCallerIdentity", "iam:SimulatePrincipalPolicy")  # doctor is using them right now
PROBE_USER = "koding-iam-doctor"


def policy_actions() -> set[str]:
    """Every action doctor knows the bot's policy grants (compared with docs/iam-policy.json by a test)."""
    return {
        *USER_ACTIONS,
        *GROUP_ACTIONS,
        *ACCOUNT_WIDE_USER_ACTIONS,
        *MFA_ACTIONS,
        *UNSCOPED_ACTIONS,
        *SELF_CHECK_ACTIONS,
    }


# AWS ------------------------------------------------------------------------------------------------------
def aws_setup_failure(exc: Exception) -> CheckResult:
    return CheckResult(
        "AWS identity",
        Status.FAIL,
        f"cannot set up an AWS client: {type(exc).__name__}: {exc}",
        "check AWS_PROFILE, AWS_DEFAULT_REGION and AWS_ENDPOINT_URL",
    )


def check_aws_identity(gateway: IamGateway) -> tuple[CheckResult, str | None]:
    try:
        caller = gateway.caller_arn()
    except AwsError as exc:
        if exc.transient and "Credentials" not in exc.code:
            fix = (
                "AWS did not answer: check network access to AWS (and AWS_ENDPOINT_URL and AWS_DEFAULT_REGION if "
                "set), then run doctor again"
            )
        else:
            fix = (
                "give the bot AWS credentials through boto3's chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or an instance/task role) and check they are current"
            )
        return (
            CheckResult("AWS identity", Status.FAIL, f"sts:GetCallerIdentity failed: {exc.code}: {exc.message}", fix),
            None,
        )
    if caller.endswith(":root"):
        return (
            CheckResult(
                "AWS identity",
                Status.FAIL,
                f"{caller}: the bot runs with the account's root credentials",
                "create a dedicated IAM user or role with docs/iam-policy.json and use its credentials instead",
            ),
            caller,
        )
    return CheckResult("AWS identity", Status.PASS, caller), caller


def principal_arn(caller: str) -> str | None:
    """The ARN to simulate for the caller: its IAM user, or the role behind an assumed-role session.

    An assumed-role session ARN does not carry the role's path; a role with a path must be checked by hand.
    """
    parts = caller.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    _, partition, _service, _region, account, resource = parts
    if resource.startswith("assumed-role/"):
        return f"arn:{partition}:iam::{account}:role/{resource.split('/')[1]}"
    if resource.startswith("user/"):
        return f"arn:{partition}:iam::{account}:{resource}"
    return None


def check_permissions(gateway: IamGateway, caller: str, settings: Settings) -> CheckResult:
    """Simulate the bot's own policy for every action it needs, against resources under its path."""
    principal = principal_arn(caller)
    path = settings.koding_iam_path
    group = next(iter(settings.profiles.values())).group
    if principal is None:
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            f"could not simulate: {caller} is not an IAM user or an assumed role",
            _by_hand("<the bot's IAM user or role ARN>", f"user{path}{PROBE_USER}", f"group{path}{group}"),
        )
    partition, account = principal.split(":")[1], principal.split(":")[4]
    base = f"arn:{partition}:iam::{account}"
    user_arn, group_arn = f"{base}:user{path}{PROBE_USER}", f"{base}:group{path}{group}"
    # Allowed only with request context that SimulatePrincipalPolicy needs passed in: checked by hand.
    conditional = {"iam:AttachGroupPolicy": "iam:PolicyARN"}
    if settings.koding_iam_permissions_boundary:
        conditional["iam:CreateUser"] = "iam:PermissionsBoundary"
    plan = [
        ([a for a in USER_ACTIONS if a not in conditional], user_arn),
        ([a for a in GROUP_ACTIONS if a not in conditional], group_arn),
        (list(ACCOUNT_WIDE_USER_ACTIONS), f"{base}:user/{PROBE_USER}"),
        (list(MFA_ACTIONS), f"{base}:mfa/{PROBE_USER}"),
        (list(UNSCOPED_ACTIONS), "*"),
    ]
    by_hand = _by_hand(principal, user_arn, group_arn)
    denied: list[str] = []
    try:
        for actions, resource in plan:
            decisions = gateway.simulate(principal, actions, [resource])
            denied.extend(
                f"{action} on {resource} ({decisions.get(action, 'no answer')})"
                for action in actions
                if decisions.get(action) != "allowed"
            )
    except AccessDenied as exc:
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            f"could not simulate: this credential may not call iam:SimulatePrincipalPolicy ({exc.code})",
            f"add the DoctorSelfCheck statement of docs/iam-policy.json, or {by_hand}",
        )
    except AwsError as exc:
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            f"could not simulate {principal}: {exc.code}: {exc.message}",
            f"if the bot runs as a role with a path, simulate its full role ARN; {by_hand}",
        )
    except NotImplementedError:  # moto and other stand-ins answer this way
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            "could not simulate: this AWS endpoint does not implement iam:SimulatePrincipalPolicy",
            by_hand,
        )
    if denied:
        return CheckResult(
            "IAM permissions",
            Status.FAIL,
            f"{principal} is not allowed: {'; '.join(denied)}",
            f"attach docs/iam-policy.json (or iam-policy-with-boundary.json) to {principal}, with the IAM path "
            f"set to {path} as docs/SECURITY.md shows",
        )
    checked = sum(len(actions) for actions, _ in plan)
    conditions = ", ".join(f"{action} (needs {key})" for action, key in conditional.items())
    return CheckResult(
        "IAM permissions",
        Status.PASS,
        f"{checked} actions allowed for {principal} under {path}; {conditions} checked by hand as docs/SECURITY.md "
        "shows",
    )


def _by_hand(principal: str, user_arn: str, group_arn: str) -> str:
    return (
        "check by hand from an administrator's shell: "
        f'aws iam simulate-principal-policy --policy-source-arn "{principal}" '
        "--action-names iam:CreateUser iam:CreateAccessKey iam:UpdateAccessKey iam:DeleteAccessKey iam:DeleteUser "
        f'--resource-arns "{user_arn}" '
        "--query 'EvaluationResults[].[EvalActionName,EvalDecision]' --output table "
        f"(and the same for the group actions on {group_arn}; docs/SECURITY.md has the full set)"
    )
