"""A diagnostic, not a fix: `koding-iam serve` with Bolt's listener pool enlarged from its default of 5 threads.

    python -m bench --quick --only provisioning --serve-command "python -m bench.whatif_listener_pool 64"

Bolt runs every listener, including the work koding-iam does after ack() (provisioning, announcing, opening
modals), on one ThreadPoolExecutor; `koding-iam serve` leaves it at Bolt's default size. Comparing the
"approvals at once" acknowledgement figures of the two runs shows how much of the wait is queueing for it.
"""

from __future__ import annotations

import sys
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    workers = int(args[0]) if args else 64

    import bot.app

    original = bot.app.create_app

    def create_app(services: Any, *, listener_executor: Executor | None = None) -> Any:
        pool = listener_executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="listener")
        return original(services, listener_executor=pool)

    bot.app.create_app = create_app  # cmd_serve imports it at call time, so it picks this one up
    from bot.cli import main as cli

    return cli(["serve"])


if __name__ == "__main__":
    sys.exit(main())
