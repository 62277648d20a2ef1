"""koding-iam's benchmark suite: `python -m bench [--quick] [--out docs/PERFORMANCE.md]`.

Each benchmark is a module with a `run(ctx) -> list[Row]` function, listed in `bench.suite.MODULES`:

- `bench.startup`       `koding-iam serve` to its first 200 from /healthz; resident memory idle and after load
- `bench.provisioning`  AWS calls per provisioning (fresh group, existing group) and per reveal; Slack calls per
                        approval; AWS calls per App Home render; 50 approvals at once under Slack's rate tiers
- `bench.dbwork`        database transactions, statements and checkouts per submission, approval and reveal
- `bench.ack_latency`   acknowledgement latency of commands, clicks and submissions at concurrency 1, 20 and 100,
                        against two floors measured in the same run (GET /healthz, a bare Bolt app); at 20, both
                        koding-iam and the bare Bolt floor are measured with 20 provisionings running in koding-iam
                        serve (`bench.background`), and acks past Slack's 3 s are counted at 100
- `bench.queries`       plans of the queries run before an acknowledgement, on the tables the load left
- `bench.rotation_sweep` the key-rotation sweep: selecting due keys among 10,000 and 100,000 on SQLite and
                        PostgreSQL (time, rows read, peak memory, query plans), and a real sweep DMing 2,000 owners
                        through a Slack stand-in that answers 429 past chat.postMessage's rate limits

The stand-ins add realistic latency by default (Slack 100 ms, AWS 50 ms per call; `--latency zero` for none,
`--slack-latency-ms` / `--aws-latency-ms` override either); every table says how it was measured.

Everything runs on one machine: `koding-iam serve` as a child process, the Slack Web API stand-in and a moto
server in a second child process (`bench.backends`, which also counts every AWS and Slack call), a bare Bolt
app in a third (`bench.bare_bolt`), and the load generator (threads, one keep-alive connection each) here.
To measure the server with other settings, pass `--serve-command`, e.g.
`--serve-command "env KODING_IAM_LISTENER_THREADS=64 .venv/bin/python -m bot.cli serve"` (the suite clears KODING_IAM_*
from the server's environment, so settings go through the command).
"""
