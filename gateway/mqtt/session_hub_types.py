"""What the MQTT hub (session_hub.py) is configured with and talks to: its settings, the
store interfaces it reports session and will changes to, the refusal a PUBLISH can meet, and a
will waiting for its delay. Importable from session_hub.py as before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.mqtt.packets import ReasonCode, Will

if TYPE_CHECKING:
    from gateway.core.queues import Queue
    from gateway.mqtt.session import Session


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """MQTT limits and choices; built by the listener from the config's [mqtt] table."""

    exchange: str = "amq.topic"
    vhost: str = "/"
    topic_mode: str = "strict"
    max_packet_size: int = 1024 * 1024
    max_inflight: int = 100
    max_queued_messages: int = 10_000
    max_connections: int = 100_000
    max_session_expiry: int = 7 * 86_400
    topic_alias_maximum: int = 64
    max_keepalive: int = 65535
    retained_max_count: int = 100_000
    retained_max_bytes: int = 256 * 1024 * 1024
    connect_timeout: float = 10.0
    # QoS 0 to a clean session whose socket is paused: "block" holds the publishers
    # (core/flow.py), "drop" drops and counts (the queue's messages_dropped).
    qos0_overflow: str = "block"


class SessionStore(Protocol):
    def saved(self, session: Session) -> None: ...

    def discarded(self, client_id: str) -> None: ...

    def sent(self, client_id: str, queue: Queue, seq: int, packet_id: int, qos: int) -> None: ...


class WillStore(Protocol):
    def saved(self, client_id: str, will: Will, due: float) -> None: ...

    def discarded(self, client_id: str) -> None: ...


class PublishRefused(Exception):
    """A PUBLISH the gateway will not route; carries the MQTT 5 reason code."""

    def __init__(self, reason_code: ReasonCode, text: str) -> None:
        super().__init__(text)
        self.reason_code = reason_code
        self.text = text


@dataclass(slots=True)
class PendingWill:
    client_id: str
    will: Will
    generation: int
