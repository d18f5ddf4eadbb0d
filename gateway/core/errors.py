"""Errors of the routing core, each carrying the reply code and text the client will see.

The texts follow RabbitMQ's wording (``rabbit_channel``, ``rabbit_amqqueue``, ``rabbit_misc``), so
a client that matches on them, and an operator who searches for them, finds what they expect.
``hard`` says whether the error closes the whole connection or only the channel.
"""

from __future__ import annotations

from typing import ClassVar


class CoreError(Exception):
    """Base of every error the core raises on purpose."""

    code: ClassVar[int] = 541
    name: ClassVar[str] = "INTERNAL_ERROR"
    hard: ClassVar[bool] = True

    def __init__(self, explanation: str) -> None:
        self.explanation = explanation
        self.text = f"{self.name} - {explanation}"
        super().__init__(self.text)


class AccessRefused(CoreError):
    code = 403
    name = "ACCESS_REFUSED"
    hard = False


class NotFound(CoreError):
    code = 404
    name = "NOT_FOUND"
    hard = False


class ResourceLocked(CoreError):
    code = 405
    name = "RESOURCE_LOCKED"
    hard = False


class PreconditionFailed(CoreError):
    code = 406
    name = "PRECONDITION_FAILED"
    hard = False


class ResourceError(CoreError):
    code = 506
    name = "RESOURCE_ERROR"
    hard = False


class InvalidPath(CoreError):
    code = 402
    name = "INVALID_PATH"
    hard = True


class CommandInvalid(CoreError):
    code = 503
    name = "COMMAND_INVALID"
    hard = True


class NotAllowed(CoreError):
    code = 530
    name = "NOT_ALLOWED"
    hard = True


class NotImplementedFeature(CoreError):
    code = 540
    name = "NOT_IMPLEMENTED"
    hard = True


LOGIN_REFUSED = (
    "Login was refused using authentication mechanism {mechanism}. "
    "For details see the broker logfile."
)


class AuthenticationFailed(CoreError):
    """Login refused. ``text`` is RabbitMQ's deliberately vague wire text; ``reason`` says why."""

    code = 403
    name = "ACCESS_REFUSED"
    hard = True

    def __init__(self, reason: str, *, mechanism: str = "PLAIN") -> None:
        super().__init__(LOGIN_REFUSED.format(mechanism=mechanism))
        self.reason = reason


def resource(kind: str, name: str, vhost: str) -> str:
    """RabbitMQ's ``rabbit_misc:rs/1``: "queue 'q' in vhost '/'"."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def exclusive_locked(queue: str, vhost: str) -> ResourceLocked:
    return ResourceLocked(
        f"cannot obtain exclusive access to locked {resource('queue', queue, vhost)}. "
        "It could be originally declared on another connection or the exclusive property "
        "value does not match that of the original declaration."
    )
