"""Command line: `gateway run`, `gateway passwd`, `gateway store check`, `gateway --version`.

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
from gateway.config import ConfigError, load_config, load_mapping_rules


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
        "--data-dir", metavar="DIR", help="durable state: the store file (default ./data)"
    )
    run.add_argument(
        "--mappings", metavar="DIR", help="topic mapping rules, *.toml (default ./mappings)"
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

    _add_mappings_parser(commands)
    _add_store_parser(commands)
    passwd = commands.add_parser("passwd", help="print a password hash for the config file")
    passwd.add_argument(
        "--stdin", action="store_true", help="read the password from standard input"
    )
    passwd.add_argument(
        "--cost", type=_scrypt_cost, default=14, metavar="N",
        help="scrypt cost as log2 of N, 10-17 (default 14: about 40 ms and 16 MiB per check;"
        " each step down halves both)",
    )  # fmt: skip
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
        load_mapping_rules(config)  # checked before anything binds; the app loads them again
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"gateway: config error: {line}", file=sys.stderr)
        return 2
    # Imported here so `gateway --help` and `gateway passwd` stay fast.
    from gateway.app import run

    return run(config)


def _scrypt_cost(text: str) -> int:
    try:
        cost = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 10 <= cost <= 17:  # 17: 128 MiB, half of what the login check accepts
        raise argparse.ArgumentTypeError(f"expected 10 to 17, got {cost}")
    return cost


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
    print(hash_password(password, n=2**args.cost))
    return 0


def _add_mappings_parser(commands: argparse._SubParsersAction[_OneLineParser]) -> None:
    mappings = commands.add_parser("mappings", help="check mapping rules; show where a topic goes")
    actions = mappings.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_OneLineParser, required=True
    )
    check = actions.add_parser("check", help="validate every *.toml in DIR without starting")
    check.add_argument("directory", metavar="DIR")
    check.add_argument("--config", metavar="FILE", help="TOML config ([mqtt] exchange, topic_mode)")
    explain = actions.add_parser(
        "explain", help="where a publish to TOPIC goes, what a filter binds"
    )
    explain.add_argument("topic", metavar="TOPIC")
    explain.add_argument("--mappings", metavar="DIR", help="rules directory (default ./mappings)")
    explain.add_argument(
        "--config", metavar="FILE", help="TOML config ([mqtt] exchange, topic_mode)"
    )


def _cmd_mappings(args: argparse.Namespace) -> int:
    from gateway.bridge.mapping_report import check_lines, explain_lines
    from gateway.bridge.mappings import TopicMap
    from gateway.bridge.topics import TopicTranslator

    mappings_dir = args.directory if args.action == "check" else args.mappings
    try:
        config = load_config(args.config, overrides={"mappings": mappings_dir})
        mappings = load_mapping_rules(config)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"gateway: mappings error: {line}", file=sys.stderr)
        return 1
    exchange = config.mqtt.exchange
    if args.action == "check":
        lines = check_lines(mappings, exchange)
    else:
        topic_map = TopicMap(TopicTranslator(config.mqtt.topic_mode), mappings, exchange=exchange)
        lines = explain_lines(topic_map, args.topic)
    for line in lines:
        print(line)
    return 0


def _add_store_parser(commands: argparse._SubParsersAction[_OneLineParser]) -> None:
    store = commands.add_parser("store", help="verify a data directory offline")
    actions = store.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_OneLineParser, required=True
    )
    check = actions.add_parser(
        "check", help="schema version, integrity and counts; exit 1 on any problem"
    )
    check.add_argument("--data-dir", metavar="DIR", help="data directory (default ./data)")
    check.add_argument("--config", metavar="FILE", help="TOML config (its data_dir)")


def _cmd_store(args: argparse.Namespace) -> int:
    from gateway.store.check import check_data_dir

    try:
        config = load_config(args.config, overrides={"data_dir": args.data_dir})
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"gateway: config error: {line}", file=sys.stderr)
        return 2
    report = check_data_dir(config.data_dir)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "mappings":
        return _cmd_mappings(args)
    if args.command == "passwd":
        return _cmd_passwd(args)
    if args.command == "store":
        return _cmd_store(args)
    build_parser().print_help()
    return 0
