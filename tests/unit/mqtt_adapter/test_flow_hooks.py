"""Flow control through the shell's explicit hooks: a publisher whose PUBLISHes reach a queue over
its high watermark (a subscriber that cannot take them) has `pause_reading` called, and
`resume_reading` once that queue drains (core/flow.py)."""

from __future__ import annotations

from gateway.core.flow import FlowControl
from gateway.core.queues import Queue
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.packets import MQTT_3_1_1, Publish, ReasonCode
from gateway.mqtt.session_handler import ClientHandler

from .harness import Client, World

HIGH = 4  # the queues' high watermark here; they release publishers at half of it


def flow_world() -> World:
    return World(flow=FlowControl(high_messages=HIGH))


def connected(world: World, client_id: str) -> Client:
    client = world.client(MQTT_3_1_1)
    assert client.connect(client_id).reason_code == ReasonCode.SUCCESS
    return client


def stalled_subscriber(world: World) -> tuple[Client, Queue]:
    """A QoS 1 subscriber whose socket is full: its queue backs up."""
    sub = connected(world, "sub")
    sub.subscribe("f/#", 1)
    sub.handler.set_writable(False)
    return sub, world.broker.vhost("/").queue("mqtt-subscription-sub")


def reading(client: Client) -> bool:
    """Whether the shell reads the client's socket (a call, so type checkers do not narrow)."""
    return client.reading


def one_read(pub: Client, count: int, start: int = 0) -> None:
    """`count` QoS 0 PUBLISHes arriving in one socket read."""
    pub.send(*(Publish("f/t", b"%d" % i, 0, False, False, None) for i in range(start, count)))


def test_publisher_into_a_backed_up_queue_is_paused_and_resumed_when_it_drains() -> None:
    world = flow_world()
    sub, queue = stalled_subscriber(world)
    pub = connected(world, "pub")
    one_read(pub, HIGH - 1)
    assert reading(pub)  # below the high watermark: nothing held
    one_read(pub, 2 * HIGH, start=HIGH - 1)
    assert not reading(pub)
    assert queue.message_count == 2 * HIGH
    assert world.broker.flow.waiting_on(queue) == 1

    sub.handler.set_writable(True)  # the subscriber drains the queue
    assert reading(pub)
    assert pub.resumes == 1
    delivered = sub.publishes()
    assert [p.payload for p in delivered] == [b"%d" % i for i in range(2 * HIGH)]
    assert world.broker.flow.waiting_on(queue) == 0


def test_a_publisher_that_goes_away_while_held_is_not_resumed() -> None:
    world = flow_world()
    sub, queue = stalled_subscriber(world)
    pub = connected(world, "pub")
    one_read(pub, 2 * HIGH)
    assert not reading(pub)
    pub.drop()
    assert world.broker.flow.waiting_on(queue) == 0
    sub.handler.set_writable(True)
    assert pub.resumes == 0
    assert len(sub.publishes()) == 2 * HIGH


class _ShellWithoutFlowControl:
    """A HandlerOwner that cannot stop reading its client."""

    can_pause_reading = False

    def output_ready(self) -> None:
        pass

    def write_now(self, packet: bytes) -> bool:
        return False

    def close_transport(self) -> None:
        pass

    def pause_reading(self) -> None:
        raise AssertionError("flow control must not pause a shell that cannot pause")

    def resume_reading(self) -> None:
        raise AssertionError("flow control must not resume a shell that cannot pause")


def test_without_hooks_a_publisher_is_never_held() -> None:
    """A shell that cannot stop reading (none given) leaves publishers to queue limits and the
    memory alarm; the batch's hits are dropped, not left for the next publisher."""
    world = flow_world()
    _, queue = stalled_subscriber(world)
    conn = MqttConnection(max_packet_size=1 << 20, connect_timeout=10.0, now=world.clock())
    handler = ClientHandler(world.hub, conn, "127.0.0.1", _ShellWithoutFlowControl())
    pub = Client(world, MQTT_3_1_1, "127.0.0.1")
    pub.conn, pub.handler = conn, handler
    assert pub.connect("bare").reason_code == ReasonCode.SUCCESS
    one_read(pub, 2 * HIGH)
    assert queue.message_count == 2 * HIGH
    assert world.broker.flow.waiting_on(queue) == 0
    assert not world.broker.flow.hits
