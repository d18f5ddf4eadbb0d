"""Command line: `gateway run`, `gateway passwd`, `gateway --version`.

Every `run` flag defaults to None so that only what the user typed overrides the environment and
the config file (flag > env > file > default, DESIGN.md section 1).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from typing import NoReturn

from gateway import __version__
from gateway.config import ConfigError, load_config, refuse_mapping_rules


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage on a bad value; we print one line that names the flag."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer port (-1 disables, 0 picks a free port), got {text!r}"
        ) from None
    if not -1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from -1 to 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="gateway",
        description="AMQP 0-9-1 and MQTT 3.1.1/5.0 broker gateway over one routing core.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)

    run = commands.add_parser("run", help="start every enabled listener")
    run.add_argument("--config", metavar="FILE", help="TOML config file (env GATEWAY_CONFIG)")
    run.add_argument("--bind", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    ports = {
        "--mqtt-port": "MQTT over TCP (default 1883)",
        "--mqtts-port": "MQTT over TLS (default 8883, off without a certificate)",
        "--ws-port": "MQTT over WebSocket at path /ws (default 15675)",
        "--amqp-port": "AMQP 0-9-1 (default 5672)",
        "--amqps-port": "AMQP 0-9-1 over TLS (default 5671, off without a certificate)",
        "--http-port": "management API and /metrics (default 15672)",
    }
    for flag, text in ports.items():
        run.add_argument(flag, type=_port, metavar="PORT", help=f"{text}; 0 = any, -1 = off")
    run.add_argument(
        "--data-dir", metavar="DIR", help="durable state (./data; reserved: no store yet)"
    )
    run.add_argument(
        "--mappings", metavar="DIR", help="topic mapping rules (./mappings; not supported yet)"
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", choices=["json", "console"])

    # `gateway --help` shows the run flags too: that is what people look for first.
    run_options = run.format_help().split("options:", 1)[-1]
    parser.epilog = (
        "gateway run [flags]:"
        + run_options
        + "\nEvery flag is also GATEWAY_<NAME> in the environment and a key in the TOML file"
        " (flag > env > file > default)."
    )

    passwd = commands.add_parser("passwd", help="print a password hash for the config file")
    passwd.add_argument(
        "--stdin", action="store_true", help="read the password from standard input"
    )
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {
        "bind": args.bind,
        "mqtt_port": args.mqtt_port,
        "mqtts_port": args.mqtts_port,
        "ws_port": args.ws_port,
        "amqp_port": args.amqp_port,
        "amqps_port": args.amqps_port,
        "http_port": args.http_port,
        "data_dir": args.data_dir,
        "mappings": args.mappings,
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    try:
        config = load_config(args.config, overrides=overrides)
        refuse_mapping_rules(config)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return 2
    # Imported here so `gateway --help` and `gateway passwd` stay fast.
    from gateway.app import run

    return run(config)


def _cmd_passwd(args: argparse.Namespace) -> int:
    from gateway.core.users import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("gateway: passwords do not match", file=sys.stderr)
            return 1
    if not password:
        print("gateway: refusing an empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "passwd":
        return _cmd_passwd(args)
    build_parser().print_help()
    return 0
