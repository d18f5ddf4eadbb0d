"""Routes cached outside the exchanges (core/routing.py `route_targets`, `offer_packet`,
`offer_rest`) and the vhost's `routing_version` that says when such a route is stale."""

from __future__ import annotations

from gateway.core.message import Message
from gateway.core.queues import Queue
from gateway.core.routing import ACCEPTED, REFUSED, offer_packet, offer_rest, route_targets
from gateway.core.sinks import set_direct

from .helpers import RecordingConsumer, make_broker, msg


class PacketSink:
    """A direct sink that takes packets while ``taking`` (and messages always)."""

    def __init__(self, *, taking: bool = True) -> None:
        self.taking = taking
        self.packets: list[object] = []
        self.messages: list[Message] = []

    def deliver_direct(self, queue: Queue, message: Message) -> bool:
        self.messages.append(message)
        return True

    def deliver_packet(self, queue: Queue, packet: object) -> bool:
        if self.taking:
            self.packets.append(packet)
        return self.taking


class MessageOnlySink:
    def deliver_direct(self, queue: Queue, message: Message) -> bool:
        return True

    def deliver_packet(self, queue: Queue, packet: object) -> bool:
        return False  # always wants the Message


def test_every_binding_and_exchange_change_bumps_the_routing_version() -> None:
    _, vhost, _ = make_broker()
    seen = [vhost.routing_version]

    def changed() -> None:
        assert vhost.routing_version > seen[-1]
        seen.append(vhost.routing_version)

    vhost.declare_queue("q")
    vhost.declare_exchange("x", "topic")
    changed()
    vhost.bind_queue("q", "amq.topic", "a.*")
    changed()
    vhost.bind_exchange("x", "amq.topic", "#")
    changed()
    vhost.unbind_queue("q", "amq.topic", "a.*")
    changed()
    vhost.bind_queue("q", "amq.topic", "b.*")
    changed()
    vhost.delete_queue("q")  # its bindings go with it
    changed()
    vhost.delete_exchange("x")
    changed()
    vhost.declare_queue("q2")
    before = vhost.routing_version
    vhost.bind_queue("q2", "amq.topic", "c")
    vhost.bind_queue("q2", "amq.topic", "c")  # already bound: nothing changes
    assert vhost.routing_version == before + 1


def test_route_targets_are_the_queues_a_key_reaches() -> None:
    _, vhost, _ = make_broker()
    for name in ("q1", "q2"):
        vhost.declare_queue(name)
    vhost.bind_queue("q1", "amq.topic", "a.*")
    vhost.bind_queue("q2", "amq.topic", "#")
    vhost.bind_queue("q1", "amq.direct", "k")
    vhost.bind_queue("q2", "amq.fanout", "")
    q1, q2 = vhost.queue("q1"), vhost.queue("q2")
    found = route_targets(vhost, "amq.topic", msg(b"x", "a.b"))
    assert found is not None
    assert set(found) == {q1, q2}
    assert route_targets(vhost, "amq.topic", msg(b"x", "z")) == (q2,)
    assert route_targets(vhost, "amq.direct", msg(b"x", "k")) == (q1,)
    assert route_targets(vhost, "amq.direct", msg(b"x", "other")) == ()
    assert route_targets(vhost, "amq.fanout", msg(b"x", "any")) == (q2,)


def test_routes_that_depend_on_more_than_the_key_are_not_cacheable() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.headers", "", {"x-match": "any", "h": "v"})
    assert route_targets(vhost, "amq.headers", msg(b"x", "k")) is None
    vhost.declare_exchange("inner", "topic")
    vhost.bind_exchange("inner", "amq.topic", "#")
    assert route_targets(vhost, "amq.topic", msg(b"x", "a")) is None
    vhost.declare_exchange("alt", "fanout")
    vhost.declare_exchange("with-ae", "topic", arguments={"alternate-exchange": "alt"})
    assert route_targets(vhost, "with-ae", msg(b"x", "a")) is None  # unroutable: alt decides
    vhost.bind_queue("q", "with-ae", "a")
    assert route_targets(vhost, "with-ae", msg(b"x", "a")) == (vhost.queue("q"),)
    vhost.declare_exchange("hidden", "topic", internal=True)
    assert route_targets(vhost, "hidden", msg(b"x", "a")) is None
    assert route_targets(vhost, "missing", msg(b"x", "a")) is None
    assert route_targets(vhost, "", msg(b"x", "q")) is None


def test_offer_packet_stops_at_the_first_queue_that_needs_a_message() -> None:
    _, vhost, _ = make_broker()
    queues = []
    sinks = [PacketSink(), PacketSink(taking=False), PacketSink()]
    for n, sink in enumerate(sinks):
        vhost.declare_queue(f"q{n}")
        queue = vhost.queue(f"q{n}")
        set_direct(queue, sink, "test")
        queues.append(queue)
    targets = tuple(queues)
    assert offer_packet(targets, "p") == 1
    assert (sinks[0].packets, sinks[2].packets) == (["p"], [])
    sinks[1].taking = True
    assert offer_packet(targets, "p2") == 3
    assert [s.packets[-1] for s in sinks] == ["p2", "p2", "p2"]


def test_offer_packet_needs_a_direct_sink_that_takes_packets_and_no_backlog() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("plain")
    vhost.declare_queue("message-only")
    vhost.declare_queue("deleted")
    vhost.declare_queue("backlog")
    plain, message_only = vhost.queue("plain"), vhost.queue("message-only")
    deleted, backlog = vhost.queue("deleted"), vhost.queue("backlog")
    set_direct(message_only, MessageOnlySink(), "test")
    set_direct(deleted, PacketSink(), "test")
    vhost.delete_queue("deleted")
    assert offer_packet((plain,), "p") == 0
    assert offer_packet((message_only,), "p") == 0
    assert offer_packet((deleted,), "p") == 1  # skipped, as _offer skips it
    backlog.offer(msg(b"old", "backlog"))  # no consumer yet: it waits
    sink = PacketSink()
    set_direct(backlog, sink, "test")
    assert offer_packet((backlog,), "p") == 0  # never overtake the backlog
    assert sink.packets == []


def test_offer_rest_offers_the_message_from_start_on() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("a")
    vhost.declare_queue("b")
    vhost.declare_queue("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    a, b, full = vhost.queue("a"), vhost.queue("b"), vhost.queue("full")
    consumer = RecordingConsumer()
    vhost.consume("b", consumer, tag="t", no_ack=True)
    message = msg(b"m", "k")
    assert offer_rest(vhost, (a, b), 1, message) == ACCEPTED
    assert (a.message_count, consumer.bodies) == (0, [b"m"])
    assert offer_rest(vhost, (a, full), 0, message) == REFUSED
    assert a.message_count == 1


def test_offer_rest_to_one_queue_answers_as_the_loop_over_several() -> None:
    # The one-queue shortcut against the general loop: the same outcome and the same effect.
    _, vhost, _ = make_broker()
    vhost.declare_queue("a")
    vhost.declare_queue("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    vhost.declare_queue("gone")
    a, full, gone = vhost.queue("a"), vhost.queue("full"), vhost.queue("gone")
    vhost.delete_queue("gone")
    assert offer_rest(vhost, (a,), 0, msg(b"1", "k")) == ACCEPTED
    assert offer_rest(vhost, (a, a), 1, msg(b"2", "k")) == ACCEPTED  # via the loop
    assert a.message_count == 2
    assert offer_rest(vhost, (full,), 0, msg(b"3", "k")) == REFUSED
    assert offer_rest(vhost, (a, full), 1, msg(b"3", "k")) == REFUSED
    assert full.message_count == 0
    # A queue deleted since the route was cached takes nothing and refuses nothing.
    assert offer_rest(vhost, (gone,), 0, msg(b"4", "k")) == ACCEPTED
    assert offer_rest(vhost, (a, gone), 1, msg(b"4", "k")) == ACCEPTED
    assert a.message_count == 2
