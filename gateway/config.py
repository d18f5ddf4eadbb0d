"""Gateway configuration: defaults < TOML file < GATEWAY_* environment < command-line flags.

The file is parsed with tomllib and converted into msgspec structs that forbid unknown keys, so a
typo fails at start-up with the file, the key and what was expected instead of being ignored.
There is no global config object: `load_config` returns a `Config` that is passed down.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from gateway.bridge.mapping_rules import EMPTY as NO_MAPPINGS
from gateway.bridge.mapping_rules import MappingError, MappingSet, load_directory
from gateway.tomlschema import UNKNOWN_KEY, split_validation_error

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]
TopicMode = Literal["strict", "rabbitmq"]

DEFAULT_CONFIG_ENV = "GATEWAY_CONFIG"


class ConfigError(Exception):
    """A configuration problem, already phrased as one line for the user."""


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None


class UserConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    password_hash: str
    tags: list[str] = msgspec.field(default_factory=list)
    vhosts: list[str] = msgspec.field(default_factory=lambda: ["/"])
    loopback_only: bool = False


class MqttConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    exchange: str = "amq.topic"
    vhost: str = "/"
    topic_mode: TopicMode = "strict"
    max_packet_size: int = 1024 * 1024
    max_inflight: int = 100
    max_queued_messages: int = 10_000
    max_connections: int = 100_000
    max_session_expiry: int = 86_400 * 7
    topic_alias_maximum: int = 64
    max_keepalive: int = 65535
    retained_max_count: int = 100_000
    retained_max_bytes: int = 256 * 1024 * 1024
    qos0_overflow: Literal["block", "drop"] = "block"


class AmqpConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_max: int = 2047
    frame_max: int = 131_072
    heartbeat: int = 60
    max_connections: int = 100_000


class StoreConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Resident body bytes of one durable queue past which the bodies of its committed
    # persistent messages are paged out to the store (gateway/core/paging.py).
    queue_memory_limit: int = 64 * 1024 * 1024
    # Messages read back from the store at once when paged ones reach a queue's head.
    page_batch: int = 1000


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything `gateway run` needs; top-level keys are the CLI flags with underscores."""

    bind: str = "0.0.0.0"
    mqtt_port: int = 1883
    mqtts_port: int = 8883
    ws_port: int = 15675
    amqp_port: int = 5672
    amqps_port: int = 5671
    http_port: int = 15672
    data_dir: str = "./data"
    mappings: str | None = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "console"
    # Bytes of queued message bodies above which publishers are paused (connection.blocked).
    memory_limit: int = 512 * 1024 * 1024
    shutdown_grace: float = 3.0
    default_guest: bool = True
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    amqp: AmqpConfig = msgspec.field(default_factory=AmqpConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    users: list[UserConfig] = msgspec.field(default_factory=list)
    vhosts: list[str] = msgspec.field(default_factory=lambda: ["/"])

    @property
    def tls_enabled(self) -> bool:
        return self.tls.certfile is not None and self.tls.keyfile is not None


# Settings that may come from flags and GATEWAY_<NAME> variables: name -> parser for env strings.
PORT_SETTINGS = ("mqtt_port", "mqtts_port", "ws_port", "amqp_port", "amqps_port", "http_port")
OVERRIDABLE: dict[str, str] = {
    "bind": "str",
    **dict.fromkeys(PORT_SETTINGS, "port"),
    "data_dir": "str",
    "mappings": "str",
    "log_level": "str",
    "log_format": "str",
}


_CHOICES: dict[str, Any] = {
    "log_level": LogLevel,
    "log_format": LogFormat,
    "mqtt.topic_mode": TopicMode,
}


def _describe_validation_error(err: msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's "Expected `int`, got `str` - at `$.mqtt.max_packet_size`" into parts."""
    key, message = split_validation_error(err)
    if message == UNKNOWN_KEY:
        message = "unknown key (not a gateway setting)"
    elif message.startswith("invalid enum value") and key in _CHOICES:
        choices = ", ".join(repr(c) for c in get_args(_CHOICES[key]))
        message = f"expected one of {choices}, got {message.split(' ', 3)[3]}"
    return key or "(top level)", message


def _load_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, kind in OVERRIDABLE.items():
        raw = environ.get(f"GATEWAY_{name.upper()}")
        if raw is None:
            continue
        if kind == "port":
            try:
                found[name] = int(raw)
            except ValueError:
                raise ConfigError(
                    f"environment: key GATEWAY_{name.upper()}: expected an integer port "
                    f"(-1 disables, 0 picks a free port), got {raw!r}"
                ) from None
        else:
            found[name] = raw
    return found


def _check_values(config: Config, origin: str) -> None:
    for name in PORT_SETTINGS:
        port = getattr(config, name)
        if not -1 <= port <= 65535:
            raise ConfigError(
                f"{origin}: key {name}: expected a port from 0 to 65535 (or -1 to disable), "
                f"got {port}"
            )
    positive = {
        "mqtt.max_packet_size": config.mqtt.max_packet_size,
        "mqtt.max_inflight": config.mqtt.max_inflight,
        "mqtt.max_queued_messages": config.mqtt.max_queued_messages,
        "mqtt.max_connections": config.mqtt.max_connections,
        "amqp.frame_max": config.amqp.frame_max,
        "amqp.channel_max": config.amqp.channel_max,
        "memory_limit": config.memory_limit,
        "store.queue_memory_limit": config.store.queue_memory_limit,
        "store.page_batch": config.store.page_batch,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{origin}: key {key}: expected a positive integer, got {value}")
    if not 0 < config.mqtt.max_packet_size <= 268_435_455:
        raise ConfigError(
            f"{origin}: key mqtt.max_packet_size: expected at most 268435455 (the MQTT limit)"
        )
    if config.amqp.frame_max < 4096:
        raise ConfigError(f"{origin}: key amqp.frame_max: expected at least 4096 (AMQP minimum)")
    if not 0 <= config.mqtt.max_inflight <= 65535:
        raise ConfigError(f"{origin}: key mqtt.max_inflight: expected 1 to 65535")
    if (config.tls.certfile is None) != (config.tls.keyfile is None):
        raise ConfigError(f"{origin}: key tls: expected both certfile and keyfile, or neither")
    for index, user in enumerate(config.users):
        if not user.password_hash.startswith("scrypt$"):
            raise ConfigError(
                f"{origin}: key users[{index}].password_hash: expected a hash printed by "
                "`gateway passwd` (starting with 'scrypt$')"
            )


def load_config(
    config_file: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective config: defaults < file < environment < `overrides` (CLI flags).

    Raises ConfigError with one line naming the file, the key and what was expected.
    """
    environ = os.environ if environ is None else environ
    if config_file is None:
        config_file = environ.get(DEFAULT_CONFIG_ENV)
    raw: dict[str, Any] = {}
    origin = "defaults"
    if config_file is not None:
        path = Path(config_file)
        origin = str(path)
        raw = _load_file(path)
    try:
        file_config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as err:
        key, what = _describe_validation_error(err)
        raise ConfigError(f"{origin}: key {key}: {what}") from None
    _check_values(file_config, origin)

    layered: dict[str, Any] = {}
    layered.update(_env_overrides(environ))
    layered.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if not layered:
        return file_config
    unknown = set(layered) - set(OVERRIDABLE)
    if unknown:
        raise ConfigError(f"overrides: unknown setting(s) {sorted(unknown)}")
    merged = msgspec.structs.replace(file_config, **layered)
    try:
        # Re-validate: enums such as log_level arrive as plain strings from env and flags.
        merged = msgspec.convert(msgspec.to_builtins(merged), Config)
    except msgspec.ValidationError as err:
        key, what = _describe_validation_error(err)
        source = "command line/environment"
        raise ConfigError(f"{source}: key {key}: {what}") from None
    _check_values(merged, "command line/environment")
    return merged


def resolve_mappings_dir(config: Config) -> Path | None:
    """`--mappings DIR`, else `./mappings` when it exists (DESIGN.md section 1)."""
    if config.mappings is not None:
        path = Path(config.mappings)
        if not path.is_dir():
            raise ConfigError(f"mappings: key mappings: expected a directory, {path} is not one")
        return path
    default = Path("mappings")
    return default if default.is_dir() else None


def load_mapping_rules(config: Config) -> MappingSet:
    """The mapping rules of `--mappings DIR` (else ./mappings when it exists), checked
    (DESIGN.md section 4). ConfigError carries every problem, one line each, naming the file
    and the rule."""
    directory = resolve_mappings_dir(config)
    if directory is None:
        return NO_MAPPINGS
    try:
        return load_directory(directory, config.mqtt.exchange)
    except MappingError as exc:
        raise ConfigError("\n".join(exc.errors)) from None
