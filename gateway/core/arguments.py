"""Declare-argument validation and equivalence checks, with RabbitMQ's error texts."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from gateway.core.errors import PreconditionFailed
from gateway.core.message import MAX_EXPIRY_MS

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_TYPES = ("classic", "quorum")


def type_name(value: object) -> str:
    """The field-table type name RabbitMQ would report for a decoded value."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def erlang_term(value: object) -> str:
    """How Erlang's ``~p`` would print a value (``true``, ``42``, ``<<"x">>``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'<<"{value}">>'
    return repr(value)


def _value_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_value(value: object) -> str:
    """``rabbit_misc:val/1`` for a plain field: quoted."""
    return f"'{_value_text(value)}'"


def typed_value(value: object, present: bool) -> str:
    """``rabbit_misc:val/1`` for a table entry: with its type, or ``none`` when absent."""
    if not present:
        return "none"
    return f"the value '{_value_text(value)}' of type '{type_name(value)}'"


def inequivalent(key: str, resource: str, received: str, current: str) -> PreconditionFailed:
    return PreconditionFailed(
        f"inequivalent arg '{key}' for {resource}: received {received} but current is {current}"
    )


def assert_field(key: str, resource: str, current: object, received: object) -> None:
    if current != received or isinstance(current, bool) != isinstance(received, bool):
        raise inequivalent(key, resource, field_value(received), field_value(current))


def _type_class(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal):
        return "int"
    if isinstance(value, float):
        return "float"
    return type_name(value)


def assert_args(
    keys: Iterable[str],
    resource: str,
    current: Mapping[str, object],
    received: Mapping[str, object],
) -> None:
    """RabbitMQ's ``assert_args_equivalence``: only the listed keys matter."""
    for key in keys:
        has_cur = key in current
        has_new = key in received
        if not has_cur and not has_new:
            continue
        cur = current.get(key)
        new = received.get(key)
        if has_cur and has_new and _type_class(cur) == _type_class(new) and cur == new:
            continue
        if key == "x-queue-type" and {cur, new} <= {"classic", None}:
            continue  # classic queues may or may not carry the argument (rabbitmq-common#341)
        raise inequivalent(key, resource, typed_value(new, has_new), typed_value(cur, has_cur))


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The queue arguments the core acts on, validated."""

    message_ttl_ms: int | None = None
    expires_ms: int | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    single_active_consumer: bool = False


_Check = Callable[[object, Mapping[str, object]], str | None]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_error(value: object) -> str | None:
    return None if _is_int(value) else f'"expected integer, got {type_name(value)}"'


def _non_neg_int(value: object, _args: Mapping[str, object]) -> str | None:
    err = _int_error(value)
    if err is None and isinstance(value, int) and value < 0:
        return f"{{value_negative,{value}}}"
    return err


def _expiry(value: object) -> str | None:
    err = _int_error(value)
    if err is None and isinstance(value, int):
        if value < 0:
            return f"{{value_negative,{value}}}"
        if value > MAX_EXPIRY_MS:
            return f"{{value_too_large,{value}}}"
    return err


def _message_ttl(value: object, _args: Mapping[str, object]) -> str | None:
    return _expiry(value)


def _expires(value: object, _args: Mapping[str, object]) -> str | None:
    if _is_int(value) and value == 0:
        return "{value_zero,0}"
    return _expiry(value)


def _string(value: object, _args: Mapping[str, object]) -> str | None:
    return None if isinstance(value, str) else f"{{unacceptable_type,{type_name(value)}}}"


def _dl_routing_key(value: object, args: Mapping[str, object]) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    if "x-dead-letter-exchange" not in args:
        return "routing_key_but_no_dlx_defined"
    return None


def _overflow(value: object, _args: Mapping[str, object]) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    return None if value in OVERFLOW_MODES else "invalid_overflow"


def _boolean(value: object, _args: Mapping[str, object]) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{type_name(value)}}}"


def _max_priority(value: object, args: Mapping[str, object]) -> str | None:
    err = _non_neg_int(value, args)
    if err is None and isinstance(value, int) and value > 255:
        return f"{{max_value_exceeded,{value}}}"
    return err


def _queue_type(value: object, _args: Mapping[str, object]) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    return None if value in QUEUE_TYPES else f"\"unsupported queue type '{value}'\""


# Same order as RabbitMQ's declare_args(), so the first error reported matches.
_QUEUE_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("x-expires", _expires),
    ("x-message-ttl", _message_ttl),
    ("x-dead-letter-exchange", _string),
    ("x-dead-letter-routing-key", _dl_routing_key),
    ("x-max-length", _non_neg_int),
    ("x-max-length-bytes", _non_neg_int),
    ("x-max-priority", _max_priority),
    ("x-overflow", _overflow),
    ("x-single-active-consumer", _boolean),
    ("x-queue-type", _queue_type),
)

# The arguments whose values must match on redeclare.
QUEUE_EQUIVALENCE_KEYS = tuple(key for key, _ in _QUEUE_CHECKS)


def parse_queue_arguments(args: Mapping[str, object], resource: str) -> QueueSettings:
    """Validate declare arguments (406 on a wrong type or value) and extract the settings."""
    dlx = args.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str):
        raise PreconditionFailed(
            f"invalid type '{type_name(dlx)}' for arg 'x-dead-letter-exchange' in {resource}"
        )
    for key, check in _QUEUE_CHECKS:
        if key in args:
            error = check(args[key], args)
            if error is not None:
                raise PreconditionFailed(f"invalid arg '{key}' for {resource}: {error}")

    def opt_int(key: str) -> int | None:
        value = args.get(key)
        return value if isinstance(value, int) else None

    def opt_str(key: str) -> str | None:
        value = args.get(key)
        return value if isinstance(value, str) else None

    return QueueSettings(
        message_ttl_ms=opt_int("x-message-ttl"),
        expires_ms=opt_int("x-expires"),
        max_length=opt_int("x-max-length"),
        max_length_bytes=opt_int("x-max-length-bytes"),
        overflow=opt_str("x-overflow") or "drop-head",
        dead_letter_exchange=opt_str("x-dead-letter-exchange"),
        dead_letter_routing_key=opt_str("x-dead-letter-routing-key"),
        single_active_consumer=args.get("x-single-active-consumer") is True,
    )


def check_consume_arguments(args: Mapping[str, object], resource: str) -> None:
    if "x-priority" in args:
        error = _int_error(args["x-priority"])
        if error is not None:
            raise PreconditionFailed(f"invalid arg 'x-priority' for {resource}: {error}")
