"""The `koding-iam` command: serve, worker (alias scheduler), db upgrade/current, demo, sweep, sync, report, doctor."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.cli_parser import build_parser
from bot.config import ConfigError, Settings, load_settings, normalise_database_url

if TYPE_CHECKING:
    from bot.services import Services


def _fail(message: str, code: int = 2) -> int:
    from bot import logs

    for line in message.splitlines() or [message]:  # one line per mistake (e.g. several in KODING_IAM_PROFILES)
        print(logs.error_line("koding_iam.cli", line), file=sys.stderr)
    return code


def _database_url_from_env() -> str:
    try:
        return normalise_database_url(os.environ.get("DATABASE_URL") or "sqlite:///koding-iam.db")
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None


def ensure_migrated(settings: Settings) -> str | None:
    """None when the schema is current; else the line telling the operator what to run.

    The embedded SQLite default upgrades itself, so a newcomer never has to run a migration by hand.
    """
    from bot import db

    engine = db.make_engine(settings.database_url)
    try:
        current, head = db.migration_state(engine)
        if current == head:
            return None
        if settings.database_is_default:
            db.upgrade(settings.database_url)
            return None
        return (
            f"the database is at revision {current or 'none'} but this version needs {head}; "
            "run `koding-iam db upgrade` first"
        )
    finally:
        engine.dispose()


def cmd_serve(_: argparse.Namespace) -> int:
    from bot import logs

    logs.configure()
    settings = load_settings()
    if problem := ensure_migrated(settings):
        return _fail(problem, 3)

    from bot.app import create_app, create_services
    from bot.lifecycle import HttpServing, Lifecycle
    from bot.server import make_wsgi_app

    life = Lifecycle()
    life.install_signal_handlers()  # SIGTERM/SIGINT: stop taking work, drain, release leases, exit 0
    services = create_services(settings, background=life.executor("background", 16))
    threads = _start_worker(services, life) if settings.koding_iam_worker == "inline" else None
    running: dict[str, Any]
    if threads is None:
        from bot.slack.outbox_sender import start_outbox

        # Runs and jobs are the worker's; what people see is still delivered from here, at once after each commit
        # (every process's sender claims by lease, so they never deliver the same thing twice).
        running = {"outbox": start_outbox(services)}
        print(
            "koding-iam: KODING_IAM_WORKER=external: run `koding-iam worker` for provisioning, offboarding and jobs",
            flush=True,
        )
    else:
        running = {"worker": threads.worker, "scheduler": threads.scheduler, "outbox": threads.outbox}
    app = create_app(services, listener_executor=life.executor("listener", settings.koding_iam_listener_threads))
    if settings.socket_mode:
        from bot.app import socket_mode_handler
        from bot.health_server import make_ops_app

        assert settings.slack_app_token is not None
        http = None
        # /healthz and /metrics on $PORT only when PORT is set (a platform that checks a bound port sets it).
        if "port" in settings.model_fields_set:
            ops = make_ops_app(services.engine, services.metrics)
            http = HttpServing(ops, port=settings.port, work=life.work, threads=4)
            http.start()
            print(f"koding-iam: Socket Mode; GET /healthz and /metrics on port {settings.port}", flush=True)
        else:
            print("koding-iam: Socket Mode (PORT is not set: no /healthz or /metrics)", flush=True)
        handler = socket_mode_handler(app, settings.slack_app_token.get_secret_value())
        handler.connect()
        return life.run(services, http=http, close_transport=handler.close, **running)
    wsgi = make_wsgi_app(app, services.engine, signing_secret=settings.slack_signing_secret.get_secret_value())
    http = HttpServing(wsgi, port=settings.port, work=life.work)
    print(f"koding-iam: serving on port {settings.port} (POST /slack/events, GET /healthz, GET /metrics)", flush=True)
    return life.run(services, http=http, **running)


def _start_worker(services: Services, life: Any) -> Any:
    """The worker's threads (bot/worker.py) on pools the graceful stop waits for; the scheduled jobs unless
    KODING_IAM_RUN_SCHEDULER=false."""
    from bot.worker import start_threads, worker_slots

    settings = services.settings
    jobs = settings.koding_iam_run_scheduler
    slots = worker_slots(settings, inline=True)
    return start_threads(
        services,
        pool=life.executor("worker", slots),
        jobs_pool=life.executor("scheduler", 10) if jobs else None,
        slots=slots,
        jobs=jobs,
    )


def _services_for_jobs(**overrides: Any) -> Services:
    from bot import logs

    logs.configure()
    settings = load_settings()
    if problem := ensure_migrated(settings):
        raise ConfigError(problem)
    from bot.app import create_services

    return create_services(settings, **overrides)


def cmd_worker(_: argparse.Namespace) -> int:
    """The worker alone (also `koding-iam scheduler`): runs, scheduled jobs and Slack deliveries; /healthz and
    /metrics on $PORT when PORT is set, as for `serve` in Socket Mode."""
    from bot.health_server import make_ops_app
    from bot.lifecycle import HttpServing, Lifecycle
    from bot.worker import start_threads, worker_slots

    life = Lifecycle()
    life.install_signal_handlers()
    services = _services_for_jobs(background=life.executor("background", 16))
    settings = services.settings
    http = None
    if "port" in settings.model_fields_set:  # bound before any work starts, so a taken port stops nothing midway
        try:
            ops = make_ops_app(services.engine, services.metrics)
            http = HttpServing(ops, port=settings.port, work=life.work, threads=4)
        except OSError as exc:
            return _fail(
                f"cannot listen on port {settings.port} for /healthz and /metrics: {exc.strerror}; "
                "give the worker its own PORT or leave PORT unset",
                3,
            )
    slots = worker_slots(settings, inline=False)
    threads = start_threads(
        services, pool=life.executor("worker", slots), jobs_pool=life.executor("scheduler", 10), slots=slots
    )
    print(f"koding-iam: worker{f'; GET /healthz and /metrics on port {settings.port}' if http else ''}", flush=True)
    return life.run(services, http=http, worker=threads.worker, scheduler=threads.scheduler, outbox=threads.outbox)


def _deliver_outbox(services: Services) -> None:
    """Send what the command marked before it exits (paced); what Slack refused for now, or what takes longer
    than the lease, is left to the outbox senders of the running processes."""
    from bot.core import outbox
    from bot.db import session_scope
    from bot.slack.outbox_sender import OutboxSender
    from bot.slack.pacing import Pacer, rates_for

    sender = OutboxSender(services, pacer=Pacer(rates_for(services.settings.koding_iam_slack_posts_per_minute)))
    handled = sender.wait_idle(services.settings.koding_iam_lease_seconds, quietly=True)
    with session_scope(services.session_factory) as session:
        outbox.release(session, owner=services.owner)
    print(f"outbox: {sender.delivered} message(s) delivered, {sender.failures} to retry ({handled} handled)")


def cmd_sweep(args: argparse.Namespace) -> int:
    from bot.flows.rotation import sweep

    services = _services_for_jobs()
    now = args.as_of or services.clock()
    report = sweep(services, now=now, dry_run=args.dry_run)
    print(f"rotation sweep as of {now.isoformat()}{' (dry run: nothing sent or changed)' if args.dry_run else ''}")
    print(format_sweep_table(report.actions, now))
    if report.total > len(report.actions):
        print(f"… and {report.total - len(report.actions)} more action(s) ({report.total} in all)")
    usage = report.usage
    print(f"key usage: {usage.total} action(s), {usage.last_used_reads} GetAccessKeyLastUsed read(s)")
    if not args.dry_run:
        print(f"sent {report.sent}, skipped {report.skipped}, failed {report.failed}")
    ends_failed = _sweep_end_dates(services, now, dry_run=args.dry_run)
    if not args.dry_run:
        _deliver_outbox(services)
    return 1 if report.failed or ends_failed else 0


def _sweep_end_dates(services: Any, now: datetime, *, dry_run: bool) -> int:
    """The end dates of time-bound users, as the scheduled sweep does them; returns how many failed."""
    from bot.core import timebound
    from bot.flows import timebound as timebound_flows

    if dry_run:
        due = [
            f"{a.state.iam_user_name}: {'end it' if a.ends else f'remind ({a.stage})'}"
            for a in timebound.plan(services.session_factory, now)
        ]
        print("end dates: " + ("; ".join(due) if due else "nothing to do"))
        return 0
    ends = timebound_flows.sweep(services, now=now)
    print(f"end dates: {ends.sent} reminded, {ends.ended} ended, {ends.skipped} skipped, {ends.failed} failed")
    if ends.ended:
        print("the ended accesses are offboarded by the worker (in `serve`, or `koding-iam worker`)")
    return ends.failed


def format_sweep_table(actions: list[Any], now: datetime) -> str:
    """A plain-text table of sweep actions: what would be (or was) sent and changed, per key."""
    if not actions:
        return "nothing to do"
    rows = [("key", "iam user", "owner", "age", "told", "now", "action")]
    for action in actions:
        key = action.key
        what = {
            "remind": "DM owner" + (" + admins" if action.tell_admins else "") + (" (repeat)" if action.repeat else ""),
            "deactivate": "deactivate key, DM owner + admins",
            "delete": "delete key, DM owner",
        }[action.kind]
        rows.append(
            (
                key.access_key_id,
                key.iam_user_name,
                key.owner_id,
                f"{(now - key.created_at).days}d",
                key.reminder_stage,
                str(action.stage),
                what,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def cmd_db(args: argparse.Namespace) -> int:
    from bot import db

    url = _database_url_from_env()
    if args.action == "upgrade":
        db.upgrade(url)
        print("koding-iam: database is at the latest revision")
        return 0
    engine = db.make_engine(url)
    try:
        current, head = db.migration_state(engine)
    finally:
        engine.dispose()
    print(f"current: {current or 'none'}\nhead:    {head}")
    return 0 if current == head else 1


def cmd_sync(args: argparse.Namespace) -> int:
    from bot import db
    from bot.aws_iam import AwsError
    from bot.core import sync, sync_findings, sync_fix

    services = _services_for_jobs()
    now = services.clock()
    factory, gateway, settings = services.session_factory, services.gateway, services.settings
    try:
        report = sync.scan(factory, gateway, settings, now)
    except AwsError as exc:
        return _fail(f"could not read IAM: {exc}")
    print(f"sync as of {now.isoformat()}: {report.users_seen} IAM user(s) at {settings.koding_iam_path}")
    if report.imported:
        print(
            f"imported {len(report.imported_keys)} access key(s) of {len(report.imported)} user(s) koding-iam did not "
            "know, so rotation covers them (koding-iam's records only; nothing in AWS changed):"
        )
        print("\n".join(f"  {line}" for line in report.imported_keys))
    for name in report.untracked:
        print(f"  {name}: not created by koding-iam and has no access key; nothing to record")
    remaining = report.findings
    if args.fix and report.fixable:
        print("fixing (koding-iam's records only; nothing in AWS changes):")
        print("\n".join(f"  - {sync_fix.describe_fix(finding)}" for finding in report.fixable))
        done = sync_fix.fix(factory, gateway, settings, report, now, actor="koding-iam sync --fix")
        print(f"fixed {len(done)}:" if done else "fixed nothing: the state changed since the scan")
        print("\n".join(f"  - {line}" for line in done))
        with db.session_scope(factory) as session:
            remaining = [sync_findings.Finding.of(row) for row in sync.open_findings(session)]
    print(sync_findings.format_findings(remaining))
    fixable = sum(1 for finding in remaining if finding.fixable)
    if remaining:
        hint = " (run `koding-iam sync --fix`; it changes only koding-iam's records)" if fixable else ""
        print(f"{len(remaining)} finding(s): {fixable} fixable{hint}, {len(remaining) - fixable} to fix by hand")
    return 1 if remaining else 0


def cmd_report(args: argparse.Namespace) -> int:
    from bot.flows import report as report_flows

    return report_flows.command(args, services=_services_for_jobs, fail=_fail)


def cmd_doctor(_: argparse.Namespace) -> int:
    from bot import doctor

    results = doctor.run_checks()
    print(doctor.format_results(results))
    return doctor.exit_status(results)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot import logs
    from bot.devtools.demo import run_demo

    logs.settings_from_env()  # an unknown LOG_LEVEL or LOG_FORMAT stops here, in one line

    return run_demo(keep=args.keep)


def _database_problem(exc: BaseException) -> str | None:
    """One line for a database that cannot be reached or opened, naming the URL (without its password)."""
    from sqlalchemy.exc import ArgumentError as UrlError
    from sqlalchemy.exc import DBAPIError, OperationalError

    if not isinstance(exc, OperationalError | DBAPIError | UrlError):
        return None
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(_database_url_from_env()).render_as_string(hide_password=True)
    except Exception:
        shown = "DATABASE_URL"
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0].removeprefix("connection failed: ") if detail else type(exc).__name__
    if shown.startswith("sqlite"):
        fix = "check DATABASE_URL and that its folder exists and is writable"
        return f"cannot open the database at {shown}: {reason}; {fix}"
    return (
        f"cannot reach the database at {shown}: {reason}; check DATABASE_URL and that the database server is "
        "running and accepts connections from here"
    )


COMMANDS = {
    "serve": cmd_serve,
    "db": cmd_db,
    "demo": cmd_demo,
    "sweep": cmd_sweep,
    "worker": cmd_worker,
    "scheduler": cmd_worker,
    "sync": cmd_sync,
    "report": cmd_report,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if problem := _database_problem(exc):
            return _fail(problem, 3)
        raise


if __name__ == "__main__":
    sys.exit(main())
