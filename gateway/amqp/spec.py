"""AMQP 0-9-1 constants and the exceptions that carry the spec's reply codes.

Numbers come from the AMQP 0-9-1 specification (amqp0-9-1.xml) with RabbitMQ's extensions
(confirm class, basic.nack, exchange-to-exchange bindings, connection.blocked).
"""

from __future__ import annotations

from typing import ClassVar, Final

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_HEARTBEAT: Final = 8
FRAME_END: Final = 0xCE
FRAME_END_BYTE: Final = b"\xce"
# type (1) + channel (2) + payload size (4) before the payload, the end octet after it.
FRAME_HEADER_SIZE: Final = 7
FRAME_OVERHEAD: Final = 8
FRAME_MIN_SIZE: Final = 4096

CLASS_CONNECTION: Final = 10
CLASS_CHANNEL: Final = 20
CLASS_EXCHANGE: Final = 40
CLASS_QUEUE: Final = 50
CLASS_BASIC: Final = 60
CLASS_CONFIRM: Final = 85
CLASS_TX: Final = 90

# Basic methods that have hand-written fast paths.
BASIC_PUBLISH: Final = 40
BASIC_RETURN: Final = 50
BASIC_DELIVER: Final = 60
BASIC_GET_OK: Final = 71
BASIC_ACK: Final = 80
BASIC_REJECT: Final = 90
BASIC_NACK: Final = 120

REPLY_SUCCESS: Final = 200
CONTENT_TOO_LARGE: Final = 311
NO_ROUTE: Final = 312
NO_CONSUMERS: Final = 313
CONNECTION_FORCED: Final = 320
INVALID_PATH: Final = 402
ACCESS_REFUSED: Final = 403
NOT_FOUND: Final = 404
RESOURCE_LOCKED: Final = 405
PRECONDITION_FAILED: Final = 406
FRAME_ERROR: Final = 501
SYNTAX_ERROR: Final = 502
COMMAND_INVALID: Final = 503
CHANNEL_ERROR: Final = 504
UNEXPECTED_FRAME: Final = 505
RESOURCE_ERROR: Final = 506
NOT_ALLOWED: Final = 530
NOT_IMPLEMENTED: Final = 540
INTERNAL_ERROR: Final = 541

REPLY_NAMES: Final[dict[int, str]] = {
    REPLY_SUCCESS: "REPLY_SUCCESS",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

# The spec's "soft-error" class: these close a channel; every other code closes the connection.
SOFT_ERROR_CODES: Final = frozenset(
    {
        CONTENT_TOO_LARGE,
        NO_ROUTE,
        NO_CONSUMERS,
        ACCESS_REFUSED,
        NOT_FOUND,
        RESOURCE_LOCKED,
        PRECONDITION_FAILED,
    }
)


def format_reply_text(code: int, explanation: str) -> str:
    """RabbitMQ's reply-text shape: ``"NOT_FOUND - no queue 'q' in vhost '/'"``."""
    name = REPLY_NAMES.get(code, "INTERNAL_ERROR")
    return f"{name} - {explanation}"


class AMQPError(Exception):
    """A protocol exception with the reply code, text and failing method the peer is told."""

    def __init__(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(code, text, class_id, method_id)
        self.code = code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def hard(self) -> bool:
        """True when the error closes the whole connection rather than one channel."""
        return self.code not in SOFT_ERROR_CODES

    @property
    def reply_text(self) -> str:
        return format_reply_text(self.code, self.text)

    def __str__(self) -> str:
        return self.reply_text


class _FixedCodeError(AMQPError):
    reply_code: ClassVar[int] = INTERNAL_ERROR

    def __init__(self, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(self.reply_code, text, class_id, method_id)


class FrameError(_FixedCodeError):
    reply_code = FRAME_ERROR


class AMQPSyntaxError(_FixedCodeError):
    reply_code = SYNTAX_ERROR


class CommandInvalid(_FixedCodeError):
    reply_code = COMMAND_INVALID


class ChannelError(_FixedCodeError):
    reply_code = CHANNEL_ERROR


class UnexpectedFrame(_FixedCodeError):
    reply_code = UNEXPECTED_FRAME


class NotAllowed(_FixedCodeError):
    reply_code = NOT_ALLOWED


class NotImplemented_(_FixedCodeError):  # noqa: N801 - the underscore avoids the builtin
    reply_code = NOT_IMPLEMENTED


class InternalError(_FixedCodeError):
    reply_code = INTERNAL_ERROR
