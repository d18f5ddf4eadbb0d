"""The listener's read of one plain QoS 0 PUBLISH (issue 7, S6: `MqttConnection.receive_qos0`
and `ClientHandler.on_single_qos0` instead of the event list): subscribers get what the general
path gives them, at the end of the same read, and the publisher's own output, keep-alive and
memory alarm are kept as the general path keeps them."""

from __future__ import annotations

import pytest

from gateway.mqtt.codec import encode
from gateway.mqtt.listener import MqttProtocol
from gateway.mqtt.packets import (
    EMPTY_PROPERTIES,
    MQTT_3_1_1,
    MQTT_5,
    Connect,
    PingReq,
    Properties,
    Publish,
    Subscribe,
    SubscriptionOptions,
)
from gateway.mqtt.session_fanout import RawFanout
from gateway.mqtt.session_handler import ClientHandler
from gateway.net import MemoryAlarm

from .test_listener_close import FakeTransport
from .test_listener_connect import Listener


def plain(topic: str, payload: bytes) -> Publish:
    return Publish(topic, payload, 0, False, False, None, EMPTY_PROPERTIES)


def client(
    listener: Listener,
    client_id: str,
    version: int = MQTT_3_1_1,
    keep_alive: int = 60,
    props: Properties = EMPTY_PROPERTIES,
) -> tuple[MqttProtocol, FakeTransport]:
    protocol, transport = listener.accept()
    connect = Connect(client_id, version, keep_alive=keep_alive, properties=props)
    protocol.data_received(encode(connect, version))
    assert transport.written[-1][:1] == b"\x20"
    transport.written.clear()
    return protocol, transport


def subscribe(
    protocol: MqttProtocol, transport: FakeTransport, topic_filter: str, version: int, **opts: bool
) -> None:
    packet = Subscribe(1, ((topic_filter, SubscriptionOptions(qos=0, **opts)),))
    protocol.data_received(encode(packet, version))
    assert transport.written[-1][:1] == b"\x90"
    transport.written.clear()


class SingleReads:
    """Counts the reads that took the single-PUBLISH path and those that took the event list.
    ``single`` includes those a `RawFanout` wrote (``fanned``), the single path's shortcut."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.single = self.events = self.fanned = 0
        on_single, handle_events = ClientHandler.on_single_qos0, ClientHandler.handle_events
        forward = RawFanout.forward

        def counted_single(handler: ClientHandler, topic: str, payload: bytes, raw: bytes) -> None:
            self.single += 1
            on_single(handler, topic, payload, raw)

        def counted_forward(fanout: RawFanout, data: bytes) -> bool:
            done = forward(fanout, data)
            self.single += done
            self.fanned += done
            return done

        def counted_events(handler: ClientHandler, events: list[object]) -> None:
            self.events += 1
            handle_events(handler, events)  # type: ignore[arg-type]

        monkeypatch.setattr(ClientHandler, "on_single_qos0", counted_single)
        monkeypatch.setattr(RawFanout, "forward", counted_forward)
        monkeypatch.setattr(ClientHandler, "handle_events", counted_events)


@pytest.mark.parametrize("pub_version", [MQTT_3_1_1, MQTT_5])
@pytest.mark.parametrize("sub_version", [MQTT_3_1_1, MQTT_5])
def test_each_lone_publish_reaches_the_subscribers_at_the_end_of_its_read(
    monkeypatch: pytest.MonkeyPatch, pub_version: int, sub_version: int
) -> None:
    listener = Listener()
    sub, sub_out = client(listener, "sub", sub_version)
    subscribe(sub, sub_out, "lone/#", sub_version)
    other, other_out = client(listener, "other", MQTT_3_1_1)
    subscribe(other, other_out, "lone/+", MQTT_3_1_1)
    pub, pub_out = client(listener, "pub", pub_version)
    for topic in ("lone/a", "lone/b"):  # the first PUBLISH to a topic name checks it
        pub.data_received(encode(plain(topic, b"warm"), pub_version))
    sub_out.written.clear()
    other_out.written.clear()
    delivered = listener.world.hub.stats["delivered"]
    reads = SingleReads(monkeypatch)
    sent = [plain("lone/a", b"first"), plain("lone/a", b"second"), plain("lone/b", bytes(300))]
    for packet in sent:
        pub.data_received(encode(packet, pub_version))
    assert (reads.single, reads.events) == (3, 0)
    assert sub_out.written == [encode(p, sub_version) for p in sent]
    assert other_out.written == [encode(p, MQTT_3_1_1) for p in sent]
    assert pub_out.written == []
    assert listener.world.hub.stats["delivered"] == delivered + 6


def test_a_publisher_subscribed_to_its_topic_gets_its_message_in_the_same_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener = Listener()
    pub, pub_out = client(listener, "self", MQTT_3_1_1)
    subscribe(pub, pub_out, "echo/#", MQTT_3_1_1)
    pub.data_received(encode(plain("echo/1", b"warm"), MQTT_3_1_1))  # the topic name, checked
    pub_out.written.clear()
    reads = SingleReads(monkeypatch)
    pub.data_received(encode(plain("echo/1", b"again"), MQTT_3_1_1))
    assert reads.single == 1
    assert reads.events == 0
    assert pub_out.written == [encode(plain("echo/1", b"again"), MQTT_3_1_1)]


def test_no_local_still_holds_on_the_single_publish_path(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = Listener()
    pub, pub_out = client(listener, "nl", MQTT_5)
    subscribe(pub, pub_out, "nl/#", MQTT_5, no_local=True)
    watcher, watcher_out = client(listener, "watcher", MQTT_5)
    subscribe(watcher, watcher_out, "nl/#", MQTT_5)
    reads = SingleReads(monkeypatch)
    for payload in (b"one", b"two"):
        pub.data_received(encode(plain("nl/x", payload), MQTT_5))
    assert reads.single == 1  # the second: the first one checked the topic name
    assert pub_out.written == []
    assert watcher_out.written == [encode(plain("nl/x", p), MQTT_5) for p in (b"one", b"two")]


def test_a_lone_publish_counts_for_the_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = Listener()
    sub, sub_out = client(listener, "ka-sub", MQTT_3_1_1)
    subscribe(sub, sub_out, "ka/#", MQTT_3_1_1)
    pub, pub_out = client(listener, "ka-pub", MQTT_3_1_1, keep_alive=10)
    pub.data_received(encode(plain("ka/t", b"warm"), MQTT_3_1_1))
    armed = pub._timer_at
    assert armed is not None
    reads = SingleReads(monkeypatch)
    clock = listener.world.clock
    # A lone PUBLISH every 10 s for a minute: never 15 s (1.5 x keep-alive) of silence.
    for _ in range(6):
        clock.now += 10.0
        listener.loop.now = clock.now
        pub.data_received(encode(plain("ka/t", b"tick"), MQTT_3_1_1))
        listener.fire_timers_due_by(clock.now)
    assert reads.single == 6
    assert not pub_out.closed
    assert pub.conn is not None
    assert pub.conn.get_timer() == clock.now + 15.0
    # Then silence: the keep-alive closes the connection.
    clock.now += 16.0
    listener.loop.now = clock.now
    listener.fire_timers_due_by(clock.now + 1.0)
    assert pub_out.closed


def test_a_lone_publish_over_the_memory_limit_raises_the_alarm_for_its_publisher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener = Listener()
    sub, sub_out = client(listener, "mem-sub", MQTT_3_1_1)
    subscribe(sub, sub_out, "mem/#", MQTT_3_1_1)
    pub, _ = client(listener, "mem-pub", MQTT_3_1_1)
    pub.data_received(encode(plain("mem/t", b"warm"), MQTT_3_1_1))
    published: list[MqttProtocol] = []
    monkeypatch.setattr(MemoryAlarm, "published", lambda alarm, conn: published.append(conn))
    reads = SingleReads(monkeypatch)
    pub.data_received(encode(plain("mem/t", b"under"), MQTT_3_1_1))
    assert published == []
    listener.alarm.limit = -1  # any queued byte count is over it
    pub.data_received(encode(plain("mem/t", b"over"), MQTT_3_1_1))
    assert reads.single == 2
    assert published == [pub]  # the alarm stops reading it (tests/unit/shell cover the rest)


def test_anything_else_in_the_read_takes_the_event_list(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = Listener()
    sub, sub_out = client(listener, "mixed-sub", MQTT_5)
    subscribe(sub, sub_out, "mixed/#", MQTT_5)
    pub, pub_out = client(listener, "mixed-pub", MQTT_5)
    pub.data_received(encode(plain("mixed/t", b"warm"), MQTT_5))
    sub_out.written.clear()
    reads = SingleReads(monkeypatch)
    with_props = Publish("mixed/t", b"p", 0, False, False, None, Properties(content_type="a/b"))
    pub.data_received(encode(plain("mixed/t", b"x"), MQTT_5) + encode(PingReq(), MQTT_5))
    pub.data_received(encode(with_props, MQTT_5))
    assert (reads.single, reads.events) == (0, 2)
    assert pub_out.written == [b"\xd0\x00"]  # PINGRESP
    assert sub_out.written == [encode(plain("mixed/t", b"x"), MQTT_5), encode(with_props, MQTT_5)]


# -- the publisher's own bytes (SessionDelivery.deliver_packet with `raw`) ------------------


def warm_up(pub: MqttProtocol, topic: str, version: int) -> None:
    """The first PUBLISH to a topic checks its name, the second finds its queues: from the
    third on a lone PUBLISH goes the cached route as packets (MqttHub.route_plain)."""
    for _ in range(2):
        pub.data_received(encode(plain(topic, b"warm"), version))


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_a_subscriber_of_the_publishers_level_is_written_the_publishers_bytes(
    version: int,
) -> None:
    listener = Listener()
    same, same_out = client(listener, "raw-same", version)
    subscribe(same, same_out, "raw/#", version)
    other_level = MQTT_5 if version == MQTT_3_1_1 else MQTT_3_1_1
    other, other_out = client(listener, "raw-other", other_level)
    subscribe(other, other_out, "raw/#", other_level)
    pub, _ = client(listener, "raw-pub", version)
    warm_up(pub, "raw/t", version)
    same_out.written.clear()
    other_out.written.clear()
    data = encode(plain("raw/t", b"as sent"), version)
    pub.data_received(data)
    assert same_out.written == [data]
    assert same_out.written[0] is data  # written as read: not decoded and encoded again
    assert other_out.written == [encode(plain("raw/t", b"as sent"), other_level)]


def test_output_queued_before_a_lone_publish_keeps_its_place() -> None:
    listener = Listener()
    sub, sub_out = client(listener, "order-sub", MQTT_3_1_1)
    subscribe(sub, sub_out, "order/#", MQTT_3_1_1)
    pub, _ = client(listener, "order-pub", MQTT_3_1_1)
    warm_up(pub, "order/t", MQTT_3_1_1)
    sub_out.written.clear()
    assert sub.conn is not None
    # Something queued for the subscriber earlier in this loop turn, to be written at its end.
    sub.conn.send_encoded(b"\xd0\x00", b"")  # (a PINGRESP)
    sub.output_ready()
    data = encode(plain("order/t", b"after it"), MQTT_3_1_1)
    pub.data_received(data)
    assert b"".join(sub_out.written) == b"\xd0\x00" + data


CONFIGS = [
    (MQTT_3_1_1, EMPTY_PROPERTIES, {}),
    (MQTT_3_1_1, EMPTY_PROPERTIES, {"retain_as_published": True}),
    (MQTT_5, EMPTY_PROPERTIES, {}),
    (MQTT_5, EMPTY_PROPERTIES, {"no_local": True}),
    (MQTT_5, Properties(topic_alias_maximum=5), {}),
    (MQTT_5, Properties(maximum_packet_size=30), {}),  # the 40-byte payload does not fit
    (MQTT_5, Properties(maximum_packet_size=200), {}),
]


def world_of_subscribers(paused: int | None) -> tuple[Listener, list[FakeTransport]]:
    listener = Listener()
    outs = []
    for i, (version, props, opts) in enumerate(CONFIGS):
        protocol, out = client(listener, f"cfg-{i}", version, props=props)
        subscribe(protocol, out, "cfg/#", version, **opts)
        if i == paused:
            protocol.pause_writing()  # the socket's buffer is full: its session takes nothing
        outs.append(out)
    return listener, outs


@pytest.mark.parametrize("pub_version", [MQTT_3_1_1, MQTT_5])
@pytest.mark.parametrize("paused", [None, 0, 2])
def test_every_subscriber_gets_what_the_event_list_would_give_it(
    pub_version: int, paused: int | None
) -> None:
    # Two gateways: the same lone PUBLISHes, read alone (the single-PUBLISH path, raw bytes
    # where they fit) or each with a PINGREQ behind it (the event list, the oracle).
    seen = []
    for alone in (True, False):
        listener, outs = world_of_subscribers(paused)
        pub, _ = client(listener, "cfg-pub", pub_version)
        warm_up(pub, "cfg/t", pub_version)
        for payload in (b"first", b"second", b"x" * 40):
            data = encode(plain("cfg/t", payload), pub_version)
            pub.data_received(data if alone else data + encode(PingReq(), pub_version))
        hub = listener.world.hub
        seen.append(([b"".join(out.written) for out in outs], hub.stats["delivered"]))
    assert seen[0] == seen[1]
    got = seen[0][0]
    if paused != 0:
        assert got[0].endswith(encode(plain("cfg/t", b"x" * 40), MQTT_3_1_1))
    # Maximum Packet Size 30: the warm-ups, "first" and "second", not the 51-byte one.
    assert got[5] == b"".join(
        encode(plain("cfg/t", p), MQTT_5) for p in (b"warm", b"warm", b"first", b"second")
    )
