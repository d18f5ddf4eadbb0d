"""Benchmarks: the gateway beside mosquitto and RabbitMQ, driven by raw-socket load generators.

Run from the repository root (the brokers must be installed: `apt-get install mosquitto
rabbitmq-server`; a missing one is skipped and said so in the table):

    .venv/bin/python bench/run.py                      # every scenario, every broker, 3 runs
    .venv/bin/python bench/run.py --scenarios mqtt_qos0_fanin,amqp_confirm --runs 5
    .venv/bin/python bench/run.py --brokers gateway,mosquitto --count 200000 --payload 1024
    .venv/bin/python bench/run.py --rate 5000          # latency at a fixed load
    .venv/bin/python bench/run.py --scenarios amqp_ack --brokers gateway --profile-gateway py-spy
    .venv/bin/python bench/run.py --list               # what each scenario does
    .venv/bin/python bench/run.py --gateway-loop asyncio   # the gateway on asyncio's own loop

What happens: each broker is started on free loopback ports with its own temporary directory
(the gateway as `python -m gateway run --bind 127.0.0.1 ...`, mosquitto with a generated config,
RabbitMQ through its package's `rabbitmq-server` script with rabbitmq_mqtt enabled and its own
epmd). For every scenario, one unmeasured warm-up run goes to each broker, then `--runs` measured
runs interleaved across brokers. Every run is bounded: `--count` messages, at most
`--run-timeout` seconds, and it ends early after `--idle-timeout` seconds without progress. All
brokers are stopped at the end, also on errors and Ctrl-C.

The load generators are asyncio Protocols over uvloop in this process, with pre-encoded
frames and a receive-side scan that builds no objects per message (paho and pika would measure
themselves). Publishers stay within a window of sent-but-unsettled messages, so queues stay
bounded and latency (the send stamp in the first 8 payload bytes) means something at full load.
MQTT is 3.1.1 everywhere: RabbitMQ 3.10's plugin speaks nothing newer.

`--profile-gateway py-spy` needs py-spy in the venv (`.venv/bin/pip install py-spy`); it
attaches to the running gateway and prints its hottest functions with file:line after the table.

Output: a table on stdout (median msgs/s of complete runs, their spread, median p50/p99 latency,
delivered %, broker CPU per message, broker RSS after the scenario), the ratios
gateway/reference, and JSON in bench/results/<time>.json (`--out` to choose). The machine has 2
cores shared by the broker and the load generator: numbers are noisy and only the ratios
within one run of this script compare like with like.
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
