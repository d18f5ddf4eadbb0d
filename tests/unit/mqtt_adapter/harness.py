"""The MQTT adapter without sockets: a real core and hub, a fake clock, and clients that speak
bytes through the sans-I/O machine exactly as the listener does.

    world = World(max_inflight=4)
    client = world.client(version=5)
    client.connect("c1")
    client.send(Subscribe(1, (("a/+", SubscriptionOptions(qos=1)),)))
    client.expect(SubAck)
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from gateway.core.broker import Broker
from gateway.core.flow import FlowControl
from gateway.core.users import User, UserDatabase, hash_password
from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.packets import (
    MQTT_5,
    Packet,
    Properties,
    PubAck,
    Publish,
)
from gateway.mqtt.session_handler import ClientHandler
from gateway.mqtt.session_hub import MqttHub, MqttSettings
from tests.mqtt_client_base import PacketClient

P = TypeVar("P")

# A deliberately cheap scrypt cost: these tests check who may log in, not the hash's strength.
GUEST_HASH = hash_password("guest", n=16)


def cheap_hash(password: str) -> str:
    return hash_password(password, n=16)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """One gateway's MQTT side: broker, users, hub; `advance` runs due timers as the app does."""

    def __init__(
        self,
        users: tuple[User, ...] = (),
        *,
        default_guest: bool = True,
        flow: FlowControl | None = None,
        **settings: Any,
    ) -> None:
        self.clock = FakeClock()
        self.broker = Broker(self.clock, flow=flow)
        self.users = UserDatabase(
            users, default_guest=default_guest, guest_password_hash=GUEST_HASH
        )
        self.hub = MqttHub(self.broker, self.users, MqttSettings(**settings), self.clock)

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.broker.handle_timer()
        self.hub.handle_timer()

    def client(self, version: int = MQTT_5, peer: str = "127.0.0.1") -> Client:
        return Client(self, version, peer)


class Client(PacketClient):
    """One connection: `send` feeds encoded packets to the server machine, `received` decodes
    what the server wrote. A transport close by the server ends the connection like the
    listener's `connection_lost` does. `reading` is what flow control made of the socket's
    reading (the listener's `pause_reading` / `resume_reading`); `send` does not look at it."""

    def __init__(self, world: World, version: int, peer: str) -> None:
        self.world = world
        self.version = version
        settings = world.hub.settings
        self.conn = MqttConnection(
            max_packet_size=settings.max_packet_size, connect_timeout=10.0, now=world.clock()
        )
        self.reading = True
        self.resumes = 0
        # When set, what `output_ready` found queued each time the handler told of output.
        self.told_chunks: list[int] | None = None
        self.handler = ClientHandler(world.hub, self.conn, peer, self)
        self.decoder = PacketDecoder(protocol_level=version)
        self.transport_closed = False
        self._inbox: deque[Packet] = deque()

    # -- HandlerOwner (session_owner.py) -----------------------------------------------------

    can_pause_reading = True

    def output_ready(self) -> None:
        if self.told_chunks is not None:
            self.told_chunks.append(self.conn.pending_chunks)

    def write_now(self, packet: bytes) -> bool:
        return False  # the harness reads what the machine queued: nothing goes past it

    def close_transport(self) -> None:
        self.transport_closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        self.resumes += 1

    def send(self, *packets: Packet) -> None:
        self.send_bytes(b"".join(encode(packet, self.version) for packet in packets))

    def send_bytes(self, data: bytes) -> None:
        assert not self.transport_closed, "the server closed this connection"
        events = self.conn.receive_data(data, self.world.clock())
        self.handler.handle_events(events)
        self._pull()
        if self.conn.closed or self.transport_closed:
            self.transport_closed = True
            self.handler.connection_lost()

    def drop(self) -> None:
        """The network connection breaks (no DISCONNECT)."""
        self._pull()
        self.transport_closed = True
        self.handler.connection_lost()

    def _pull(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self._inbox.extend(self.decoder.feed(data))

    def received(self) -> list[Packet]:
        self._pull()
        out = list(self._inbox)
        self._inbox.clear()
        return out

    def expect(self, kind: type[P]) -> P:
        """The next packet from the server, which must be a `kind`; later ones stay queued."""
        self._pull()
        assert self._inbox, f"nothing received, expected {kind.__name__}"
        packet = self._inbox.popleft()
        assert isinstance(packet, kind), (packet, list(self._inbox))
        return packet

    def publishes(self) -> list[Publish]:
        got = self.received()
        assert all(isinstance(p, Publish) for p in got), got
        return [p for p in got if isinstance(p, Publish)]

    # -- conveniences ------------------------------------------------------------------------

    def publish_acked(self, topic: str, payload: bytes = b"x", **kw: Any) -> PubAck:
        self.publish(topic, payload, 1, **kw)
        return self.expect(PubAck)


# (client id, protocol level, clean start, Maximum Packet Size or None)
ClientSpec = tuple[str, int, bool, int | None]


class ScriptedRun:
    """One world driven by scripted operations against twin worlds (a fast path and its
    oracle): clients are made on first use from ``specs`` by index (again after a drop), and
    `log` is everything anybody observed."""

    def __init__(self, specs: tuple[ClientSpec, ...], **world_settings: Any) -> None:
        self.specs = specs
        self.world = World(**world_settings)
        self.vhost = self.world.broker.vhost("/")
        self.vhost.declare_queue("amqp")
        self.clients: dict[int, Client] = {}
        self.log: list[object] = []
        self.packet_id = 0

    def apply_shared(self, step: tuple[Any, ...]) -> None:
        """The steps every twin-world test has: ("bind" | "unbind", key) the AMQP queue to
        amq.topic, ("pause", index, writable) a client's socket, ("drop", index) a client."""
        kind = step[0]
        if kind == "bind":
            self.vhost.bind_queue("amqp", "amq.topic", step[1])
        elif kind == "unbind":
            self.vhost.unbind_queue("amqp", "amq.topic", step[1])
        elif kind == "pause":
            _, index, writable = step
            self.client(index).handler.set_writable(writable)
        elif kind == "drop":
            self.client(step[1]).drop()
        else:
            raise ValueError(f"not a step of this run: {step!r}")

    def queue_counts(self) -> list[tuple[str, int, int, int, int]]:
        """Every queue's name, ready and unacked counts, drops and refusals, by name."""
        return sorted(
            (q.name, q.message_count, q.unacked_count, q.dropped, q.refused)
            for q in self.vhost.queues()
        )

    def received_by(self, index: int, kind: type[P]) -> list[P]:
        """The packets of ``kind`` that client ``index`` received over the run, in order (the
        ``(index, packets)`` entries of `log`)."""
        return [
            packet
            for entry in self.log
            if isinstance(entry, tuple) and entry[0] == index and isinstance(entry[1], list)
            for packet in entry[1]
            if isinstance(packet, kind)
        ]

    def client(self, index: int) -> Client:
        client = self.clients.get(index)
        if client is None or client.transport_closed:
            client_id, version, clean, max_size = self.specs[index]
            client = self.world.client(version)
            props = Properties()
            if max_size and version == MQTT_5:
                props = Properties(maximum_packet_size=max_size)
            self.log.append(
                ("connack", index, client.connect(client_id, clean=clean, properties=props))
            )
            self.clients[index] = client
        return client
