"""The compliance report's two doors: `koding-iam report` and `/koding-iam report` (admins, CSV to their DM).

Facts are gathered in two passes, never overlapping: the records in one short read (then the session is
closed), then AWS, one GetAccessKeyLastUsed call per key, so the last use is as of now. bot/core/report.py turns
them into rows and verdicts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, or_, select

from bot.aws_iam import AwsError, IamGateway, KeyLastUsed, NoSuchEntity
from bot.core import audit, report
from bot.db import session_scope
from bot.services import Services
from bot.slack import blockkit, views
from models import AccessKey, AccessRequest, Exemption, GrantStatus, KeyGrant, KeyStatus, RequestStatus

FORMATS = ("csv", "json")
# Requests whose IAM user exists: listed even without a key.
USER_HOLDING = (RequestStatus.PROVISIONED, RequestStatus.REVOKING)


def gather(
    services: Services, as_of: datetime
) -> tuple[list[report.RequestFacts], list[report.KeyFacts], list[report.ExemptionFacts]]:
    """What koding-iam records, read in one short transaction (nothing else is called while it is open)."""
    with session_scope(services.session_factory) as session:
        keys = [
            report.KeyFacts(*row)
            for row in session.execute(
                select(
                    AccessKey.access_key_id,
                    AccessKey.iam_user_name,
                    AccessKey.owner_id,
                    AccessKey.request_id,
                    AccessKey.status,
                    AccessKey.created_at,
                    AccessKey.reminder_stage,
                ).where(AccessKey.status != KeyStatus.DELETED)
            )
        ]
        named = {key.request_id for key in keys if key.request_id is not None}
        rotations = dict(
            session.execute(
                select(KeyGrant.request_id, func.count())
                .where(KeyGrant.replaces_access_key_id.is_not(None), KeyGrant.status == GrantStatus.REVEALED)
                .group_by(KeyGrant.request_id)
            ).all()
        )
        requests = [
            report.RequestFacts(
                id=request.id,
                requester_id=request.requester_id,
                iam_user_name=request.iam_user_name,
                profiles=tuple(request.profile_keys),
                decided_by=request.decided_by,
                decided_at=request.decided_at,
                rotations=int(rotations.get(request.id, 0)),
                holds_user=request.status in USER_HOLDING,
            )
            for request in session.scalars(
                select(AccessRequest).where(or_(AccessRequest.status.in_(USER_HOLDING), AccessRequest.id.in_(named)))
            )
        ]
        exemptions = [
            report.ExemptionFacts(row.iam_user_name, row.until, row.reason, row.created_by)
            for row in session.scalars(select(Exemption).where(Exemption.until > as_of))
        ]
    return requests, keys, exemptions


def last_uses(gateway: IamGateway, access_key_ids: list[str]) -> dict[str, KeyLastUsed | None]:
    """GetAccessKeyLastUsed per key; None for a key IAM no longer has. Any other AWS error stops the report:
    evidence with holes (a missing permission, throttling) must not pass for a clean result."""
    found: dict[str, KeyLastUsed | None] = {}
    for access_key_id in access_key_ids:
        try:
            found[access_key_id] = gateway.access_key_last_used(access_key_id)
        except NoSuchEntity:
            found[access_key_id] = None
    return found


def build_report(services: Services, as_of: datetime) -> report.Report:
    requests, keys, exemptions = gather(services, as_of)
    used = last_uses(services.gateway, [key.access_key_id for key in keys])
    thresholds = report.Thresholds.from_settings(services.settings)
    return report.build(requests, keys, exemptions, used, as_of=as_of, thresholds=thresholds)


# `koding-iam report` -------------------------------------------------------------------------------------
def parse_as_of(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--as-of {value!r} is not an ISO-8601 time, e.g. 2027-03-01T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def command(args: argparse.Namespace, *, services: Callable[[], Services], fail: Callable[[str, int], int]) -> int:
    """Exit 0 with the report written; 2 for a bad argument or an unwritable --out; 1 when AWS could not answer."""
    try:
        as_of = parse_as_of(args.as_of) if args.as_of is not None else None
    except ValueError as exc:
        return fail(str(exc), 2)
    if args.format not in FORMATS:
        return fail(f"--format {args.format!r} is not one of csv, json", 2)
    running = services()
    moment = as_of or running.clock()
    try:
        built = build_report(running, moment)
    except AwsError as exc:
        return fail(f"could not read IAM ({exc.code}): {exc.message}; nothing was written", 1)
    text = report.to_csv(built) if args.format == "csv" else report.to_json(built)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror or exc}", 2)
    print(f"wrote {len(built.rows)} row(s), {built.users} IAM user(s) and {built.keys} key(s), to {args.out}")
    print("\n".join(report.summary_lines(built)))
    return 0


# `/koding-iam report` -------------------------------------------------------------------------------------
def report_command(services: Services, *, admin_id: str, channel: str | None) -> None:
    """Admins only (checked here too, not just by the handler); the work runs after the acknowledgement."""
    if not services.is_admin(admin_id):
        services.notifier.ephemeral(channel, admin_id, "Only koding-iam admins can build the compliance report.")
        return
    services.background.submit(send_report, services, admin_id=admin_id)


def send_report(services: Services, *, admin_id: str) -> None:
    """Build the CSV, tell the admin its summary in their DM, and upload the file there."""
    now = services.clock()
    try:
        built = build_report(services, now)
    except AwsError as exc:
        problem = f"The compliance report could not be built: AWS answered {exc.code}. Nothing was sent."
        services.notifier.dm(admin_id, problem, [blockkit.section_block(views.escape(problem))])
        return
    lines = report.summary_lines(built)
    text = f"Compliance report as of {report.iso(now)}: {built.users} IAM user(s), {built.keys} access key(s)."
    blocks = [
        blockkit.section_block(views.escape(text)),
        blockkit.section_block("\n".join(f"• {views.escape(x)}" for x in lines)),
    ]
    posted = services.notifier.dm(admin_id, text, blocks)
    if posted is None:
        return
    filename = f"koding-iam-report-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.csv"
    title = f"koding-iam compliance report, {report.iso(now)}"
    uploaded = services.notifier.upload_file(posted[0], filename=filename, content=report.to_csv(built), title=title)
    if not uploaded:
        problem = "The report's CSV could not be uploaded here; `koding-iam report` writes the same file."
        services.notifier.dm(admin_id, problem, [blockkit.section_block(views.escape(problem))])
        return
    with session_scope(services.session_factory) as session:
        audit.record(session, action="report.sent", actor=admin_id, at=now, rows=len(built.rows), file=filename)
