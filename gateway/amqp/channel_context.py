"""What every AMQP connection of one gateway shares: the broker, users, limits and hooks.

One :class:`AmqpContext` serves all AMQP listeners of a gateway (plain and TLS), so a direct
reply-to token minted on one reaches a channel on the other, and the connection limit counts
both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway import __version__
from gateway.amqp.channel_consume import REPLY_TO_PREFIX
from gateway.amqp.connection_handshake import SERVER_CAPABILITIES
from gateway.core.broker import Broker
from gateway.core.message import Message
from gateway.core.users import UserDatabase

if TYPE_CHECKING:
    from gateway.amqp.channel import AmqpChannel

PRODUCT: Final = "amqp-mqtt-gateway"

# What RabbitMQ announces, minus consumer priorities, which the core does not implement.
CAPABILITIES: Final[Mapping[str, bool]] = {
    name: value for name, value in SERVER_CAPABILITIES.items() if name != "consumer_priorities"
}

PublishHook = Callable[[str, Message], None]


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """AMQP limits; the listener builds them from the config's [amqp] table."""

    channel_max: int = 2047
    frame_max: int = 131_072
    heartbeat: int = 60
    max_connections: int = 100_000
    # Queued body bytes above which publishing connections are blocked.
    memory_limit: int = 512 * 1024 * 1024
    handshake_timeout: float = 10.0
    close_timeout: float = 3.0


class AmqpContext:
    """Shared state of the AMQP side.

    ``on_publish(exchange, message)`` runs after every successful publish with headers to an
    exchange in ``hooked_exchanges`` (the MQTT side uses it to store retained messages, which
    header ``x-mqtt-retain`` asks for); without a hook publishing pays nothing for it.
    """

    def __init__(
        self,
        broker: Broker,
        users: UserDatabase,
        settings: AmqpSettings | None = None,
        *,
        on_publish: PublishHook | None = None,
        hooked_exchanges: frozenset[str] = frozenset(),
    ) -> None:
        self.broker = broker
        self.users = users
        self.settings = AmqpSettings() if settings is None else settings
        self.clock = broker.clock
        self.on_publish = on_publish
        self.hooked_exchanges = hooked_exchanges
        # Direct reply-to: token -> the channel consuming amq.rabbitmq.reply-to with it.
        self.reply_channels: dict[str, AmqpChannel] = {}
        self.connections = 0
        self.server_properties: dict[str, object] = {
            "product": PRODUCT,
            "version": __version__,
            "platform": "Python",
            "information": "AMQP 0-9-1 and MQTT over one routing core",
            "capabilities": dict(CAPABILITIES),
        }

    def deliver_reply(self, routing_key: str, message: Message) -> bool:
        """Hand a publish to `amq.rabbitmq.reply-to.<token>` (default exchange) to the channel
        consuming with that token; False when none is (the reply is unroutable)."""
        channel = self.reply_channels.get(routing_key[len(REPLY_TO_PREFIX) :])
        return channel is not None and channel.deliver_reply(message)
