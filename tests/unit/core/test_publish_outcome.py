"""``VirtualHost.publish_outcome`` gives ``publish``'s verdict without building lists, and
``ack_many`` settles a batch with the same effects as acking one delivery at a time."""

from __future__ import annotations

import pytest

from gateway.core import routing
from gateway.core.consumers import CreditGroup, Delivery
from gateway.core.errors import AccessRefused, NotFound
from gateway.core.routing import ACCEPTED, REFUSED, UNROUTABLE
from gateway.core.settlement import ack_many
from gateway.core.vhost import RouteResult, VirtualHost

from .helpers import RecordingConsumer, make_broker, msg
from .test_broker import RecordingObserver


def _both(vhost: VirtualHost, exchange: str, key: str) -> tuple[int, RouteResult]:
    """The outcome of one publish and the RouteResult of the same publish again."""
    return vhost.publish_outcome(exchange, msg(b"x", key)), vhost.publish(exchange, msg(b"y", key))


def test_vhost_publishing_is_the_routing_module() -> None:
    assert VirtualHost.publish is routing.publish
    assert VirtualHost.publish_outcome is routing.publish_outcome
    assert RouteResult is routing.RouteResult


def test_outcomes_match_route_results() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.declare_queue("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    vhost.bind_queue("q", "amq.topic", "a.*")
    vhost.bind_queue("full", "amq.topic", "a.b")
    outcome, result = _both(vhost, "", "nowhere")
    assert (outcome, result.routed) == (UNROUTABLE, False)
    outcome, result = _both(vhost, "", "q")
    assert (outcome, result.routed, result.rejected) == (ACCEPTED, True, [])
    outcome, result = _both(vhost, "amq.topic", "a.c")
    assert (outcome, result.rejected) == (ACCEPTED, [])
    outcome, result = _both(vhost, "amq.topic", "a.b")  # one takes it, one refuses
    assert (outcome, [q.name for q in result.rejected]) == (REFUSED, ["full"])
    outcome, result = _both(vhost, "", "full")
    assert (outcome, result.queues) == (REFUSED, [])
    assert vhost.queue("q").message_count == 6  # two of each of the three routed keys


def test_exchange_bindings_and_alternate_exchanges() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.declare_queue("lost")
    vhost.declare_exchange("x", "direct", arguments={"alternate-exchange": "ae"})
    vhost.declare_exchange("ae", "fanout")
    vhost.bind_queue("lost", "ae", "")
    vhost.bind_exchange("x", "amq.direct", "k")
    vhost.bind_queue("q", "x", "k")
    assert vhost.publish_outcome("amq.direct", msg(b"1", "k")) == ACCEPTED
    assert vhost.publish_outcome("x", msg(b"2", "other")) == ACCEPTED
    assert vhost.publish_outcome("amq.direct", msg(b"3", "other")) == UNROUTABLE
    assert [e.message.body for e in vhost.queue("q").ready_entries()] == [b"1"]
    assert [e.message.body for e in vhost.queue("lost").ready_entries()] == [b"2"]


def test_a_deleted_queue_counts_as_accepted_as_in_publish() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.queue("q")._destroy()  # still reachable by name, as inside a deliver callback
    assert vhost.publish_outcome("", msg(b"x", "q")) == ACCEPTED
    assert vhost.publish("", msg(b"x", "q")).rejected == []


def test_missing_and_internal_exchanges_raise_as_publish_does() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("inner", "fanout", internal=True)
    with pytest.raises(NotFound, match="no exchange 'nope' in vhost '/'"):
        vhost.publish_outcome("nope", msg())
    with pytest.raises(AccessRefused, match="cannot publish to internal exchange 'inner'"):
        vhost.publish_outcome("inner", msg())


# -- ack_many ----------------------------------------------------------------------------------


def test_ack_many_wakes_the_other_queues_of_a_full_credit_group() -> None:
    _, vhost, _ = make_broker()
    for name in ("a", "b"):
        vhost.declare_queue(name)
    group = CreditGroup(1)
    ca, cb = RecordingConsumer(), RecordingConsumer()
    vhost.consume("a", ca, tag="ca", no_ack=False, credit_group=group)
    vhost.consume("b", cb, tag="cb", no_ack=False, credit_group=group)
    vhost.publish("", msg(b"a0", "a"))
    vhost.publish("", msg(b"b0", "b"))  # the group is full: b0 waits
    assert (ca.bodies, cb.bodies) == ([b"a0"], [])
    ack_many(ca.take())  # frees the group's credit: queue b, not touched by the batch, gets it
    assert cb.bodies == [b"b0"]
    assert group.unacked == 1


def test_ack_many_of_basic_get_deliveries_and_durable_messages() -> None:
    broker, vhost, _ = make_broker()
    observer = RecordingObserver()
    broker.observers.append(observer)
    vhost.declare_queue("d", durable=True)
    for body in (b"p1", b"p2"):
        vhost.publish("", msg(body, "d", persistent=True))
    vhost.publish("", msg(b"t", "d"))
    got: list[Delivery] = []
    for _ in range(3):
        taken = vhost.get("d", no_ack=False)
        assert taken is not None
        got.append(taken[0])
    queue = vhost.queue("d")
    assert queue.unacked_count == 3
    ack_many(got)
    assert queue.unacked_count == 0
    assert broker.queued_bytes == 0
    assert [e for e in observer.events if e[0] == "rm"] == [("rm", "p1"), ("rm", "p2")]
