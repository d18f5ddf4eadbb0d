"""Benchmarks (issue 7): the gateway beside mosquitto, RabbitMQ (+rabbitmq_mqtt) and amqtt.

Run from the repository root (mosquitto and RabbitMQ from apt: `apt-get install mosquitto
rabbitmq-server`; amqtt is in the venv; a missing broker is skipped and said so):

    .venv/bin/python bench/run.py                       # S1..S7 on every broker, 3 runs each
    .venv/bin/python bench/run.py --scenarios all       # plus B1,B5 (bounded memory, gateway)
    .venv/bin/python bench/run.py --scenarios S1,S2 --brokers gateway,mosquitto --runs 5
    .venv/bin/python bench/run.py --scenarios S3 --brokers gateway --profile-gateway py-spy
    .venv/bin/python bench/run.py --list                # what each scenario measures

Each broker is started on free loopback ports with its own temporary directory and stopped at
the end, also on errors, Ctrl-C and SIGTERM. Every role of a scenario (each publisher, the
subscriber or consumer, the S7 connection openers) is its own forked process with blocking
sockets: publishers write pre-encoded frames `--batch` messages per send, receivers count with
strided byte comparisons (bench/streams.py) rather than a Python step per message, and each
role's CPU is reported beside the broker's (gen%: the busiest role, in % of one core).
Publishers stay within a window of sent-but-undelivered messages (shared-memory counter), QoS 1
publishers within 100 PUBLISHes awaiting PUBACK, confirm publishers within 1000 unconfirmed.
Runs are bounded by count, `--run-timeout` and `--idle-timeout`, and interleaved across
brokers; the table gives medians and ratios gateway/peer, the JSON goes to bench/results/.
`--profile-gateway py-spy` needs `.venv/bin/pip install py-spy` (not a project dependency).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from bench.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    # `python bench/run.py` puts bench/ on sys.path, not the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
