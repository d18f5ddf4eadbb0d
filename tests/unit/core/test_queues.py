"""Queue declaration, arguments, exclusivity, auto-delete, x-expires, purge and delete."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gateway.core.errors import (
    AccessRefused,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)

from .helpers import RecordingConsumer, make_broker, publish

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'q' in vhost '/'. "
    "It could be originally declared on another connection or the exclusive property value "
    "does not match that of the original declaration."
)


def test_declare_reports_counts() -> None:
    _, vhost, _ = make_broker()
    ok = vhost.declare_queue("q")
    assert (ok.queue_name, ok.message_count, ok.consumer_count) == ("q", 0, 0)
    publish(vhost, "", "q")
    publish(vhost, "", "q")
    vhost.consume("q", RecordingConsumer(accepting=False), tag="c", no_ack=False)
    ok = vhost.declare_queue("q")
    assert (ok.message_count, ok.consumer_count) == (2, 1)
    ok = vhost.declare_queue("q", passive=True)
    assert (ok.message_count, ok.consumer_count) == (2, 1)


def test_server_named_queues() -> None:
    _, vhost, _ = make_broker()
    names = {vhost.declare_queue("").queue_name for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", name)
        assert vhost.queue(name).name == name


def test_reserved_prefix_for_queues() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(AccessRefused) as info:
        vhost.declare_queue("amq.mine")
    assert (
        info.value.text == "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'"
    )


def test_passive_declare_of_missing_queue() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(NotFound) as info:
        vhost.declare_queue("q1", passive=True)
    assert info.value.text == "NOT_FOUND - no queue 'q1' in vhost '/'"
    assert info.value.code == 404
    assert not info.value.hard


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"durable": True},
            "inequivalent arg 'durable' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"auto_delete": True},
            "inequivalent arg 'auto_delete' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"arguments": {"x-message-ttl": 2000}},
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received the value '2000' of type 'long' but current is none",
        ),
    ],
)
def test_inequivalent_redeclare(kwargs: dict[str, object], text: str) -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    with pytest.raises(PreconditionFailed) as info:
        vhost.declare_queue("q", **kwargs)  # type: ignore[arg-type]
    assert info.value.text == "PRECONDITION_FAILED - " + text


def test_inequivalent_argument_values() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-max-length": 10, "x-custom": "a"})
    vhost.declare_queue("q", arguments={"x-max-length": 10, "x-custom": "b"})  # not compared
    with pytest.raises(PreconditionFailed) as info:
        vhost.declare_queue("q", arguments={"x-max-length": 11})
    assert info.value.text.endswith(
        "received the value '11' of type 'long' but current is the value '10' of type 'long'"
    )
    with pytest.raises(PreconditionFailed):
        vhost.declare_queue("q", arguments={})
    vhost.declare_queue("t", arguments={"x-queue-type": "classic"})
    vhost.declare_queue("t")  # classic with or without the argument is the same


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"x-message-ttl": -1}, "{value_negative,-1}"),
        ({"x-message-ttl": "10"}, '"expected integer, got longstr"'),
        ({"x-message-ttl": 2**32}, "{value_too_large,4294967296}"),
        ({"x-expires": 0}, "{value_zero,0}"),
        ({"x-expires": -5}, "{value_negative,-5}"),
        ({"x-max-length": -1}, "{value_negative,-1}"),
        ({"x-max-length": True}, '"expected integer, got bool"'),
        ({"x-max-length-bytes": 1.5}, '"expected integer, got double"'),
        ({"x-overflow": "drop-tail"}, "invalid_overflow"),
        ({"x-overflow": 1}, "{unacceptable_type,long}"),
        ({"x-dead-letter-routing-key": "k"}, "routing_key_but_no_dlx_defined"),
        ({"x-single-active-consumer": "yes"}, "{unacceptable_type,longstr}"),
        ({"x-queue-type": "stream"}, "\"unsupported queue type 'stream'\""),
        ({"x-max-priority": 300}, "{max_value_exceeded,300}"),
    ],
)
def test_argument_validation(args: dict[str, object], error: str) -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(PreconditionFailed) as info:
        vhost.declare_queue("q", arguments=args)
    (key,) = args
    assert info.value.text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue 'q' in vhost '/': {error}"
    )
    with pytest.raises(NotFound):
        vhost.queue("q")


def test_dead_letter_exchange_type() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(PreconditionFailed) as info:
        vhost.declare_queue("q", arguments={"x-dead-letter-exchange": 3})
    assert info.value.text == (
        "PRECONDITION_FAILED - invalid type 'long' for arg 'x-dead-letter-exchange' "
        "in queue 'q' in vhost '/'"
    )


def test_valid_arguments_are_applied() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue(
        "q",
        arguments={
            "x-max-length": 3,
            "x-max-length-bytes": 100,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "dlx",
            "x-dead-letter-routing-key": "dead",
            "x-single-active-consumer": True,
        },
    )
    q = vhost.queue("q")
    assert (q.max_length, q.max_length_bytes, q.overflow) == (3, 100, "reject-publish")
    assert (q.dead_letter_exchange, q.dead_letter_routing_key) == ("dlx", "dead")
    assert q.single_active_consumer


def test_quorum_type_needs_durable_non_exclusive() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("qq", durable=True, arguments={"x-queue-type": "quorum"})
    with pytest.raises(PreconditionFailed):
        vhost.declare_queue("qq2", arguments={"x-queue-type": "quorum"})


def test_exclusive_queue_belongs_to_its_owner() -> None:
    _, vhost, _ = make_broker()
    me, other = object(), object()
    vhost.declare_queue("q", exclusive=True, owner=me)
    assert not vhost.queue("q").durable
    vhost.declare_queue("q", exclusive=True, owner=me)
    vhost.declare_queue("q", passive=True, owner=me)
    attempts: list[Callable[[], object]] = [
        lambda: vhost.declare_queue("q", exclusive=True, owner=other),
        lambda: vhost.declare_queue("q", owner=me),  # exclusive flag differs
        lambda: vhost.declare_queue("q", passive=True, owner=other),
        lambda: vhost.bind_queue("q", "amq.direct", "k", owner=other),
        lambda: vhost.unbind_queue("q", "amq.direct", "k", owner=other),
        lambda: vhost.purge_queue("q", owner=other),
        lambda: vhost.delete_queue("q", owner=other),
        lambda: vhost.get("q", no_ack=True, owner=other),
        lambda: vhost.consume("q", RecordingConsumer(), tag="c", no_ack=True, owner=other),
    ]
    for attempt in attempts:
        with pytest.raises(ResourceLocked) as info:
            attempt()
        assert info.value.text == LOCKED
        assert info.value.code == 405
    vhost.bind_queue("q", "amq.direct", "k", owner=me)
    assert publish(vhost, "amq.direct", "k") == ["q"]


def test_non_exclusive_queue_cannot_be_redeclared_exclusive() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    with pytest.raises(ResourceLocked):
        vhost.declare_queue("q", exclusive=True, owner=object())


def test_owner_closed_deletes_exclusive_queues_only() -> None:
    _, vhost, _ = make_broker()
    me = object()
    vhost.declare_queue("mine", exclusive=True, owner=me)
    vhost.declare_queue("shared")
    vhost.bind_queue("mine", "amq.fanout", "", owner=me)
    consumer = RecordingConsumer()
    vhost.consume("mine", consumer, tag="c", no_ack=False, owner=me)
    vhost.owner_closed(me)
    with pytest.raises(NotFound):
        vhost.queue("mine")
    assert vhost.queue("shared")
    assert not vhost.exchange("amq.fanout").bindings
    assert consumer.cancelled == 0  # cancelled by its owner's close, not by the server


def test_auto_delete_queue_goes_with_its_last_consumer() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q", auto_delete=True)
    a = vhost.consume("q", RecordingConsumer(), tag="a", no_ack=True)
    b = vhost.consume("q", RecordingConsumer(), tag="b", no_ack=True)
    a.cancel()
    assert vhost.queue("q")
    b.cancel()
    with pytest.raises(NotFound):
        vhost.queue("q")


def test_auto_delete_queue_without_consumers_stays() -> None:
    _, vhost, clock = make_broker()
    vhost.declare_queue("q", auto_delete=True)
    clock.advance(3600)
    vhost.broker.handle_timer()
    assert vhost.queue("q")


def test_x_expires_deletes_unused_queue() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q", arguments={"x-expires": 5000})
    vhost.bind_queue("q", "amq.direct", "k")
    assert broker.next_timer() == clock.now + 5
    clock.advance(4)
    broker.handle_timer()
    vhost.declare_queue("q", arguments={"x-expires": 5000})  # a redeclare is a use
    clock.advance(4)
    broker.handle_timer()
    assert vhost.queue("q")
    vhost.get("q", no_ack=True)  # so is a basic.get
    clock.advance(4.5)
    broker.handle_timer()
    assert vhost.queue("q")
    clock.advance(0.5)
    assert broker.next_timer() == clock.now
    broker.handle_timer()
    with pytest.raises(NotFound):
        vhost.queue("q")
    assert not vhost.exchange("amq.direct").bindings
    assert broker.next_timer() is None


def test_x_expires_waits_while_consumed() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q", arguments={"x-expires": 1000})
    sub = vhost.consume("q", RecordingConsumer(), tag="c", no_ack=True)
    clock.advance(10)
    broker.handle_timer()
    assert vhost.queue("q")
    sub.cancel()
    clock.advance(0.9)
    broker.handle_timer()
    assert vhost.queue("q")
    clock.advance(0.1)
    broker.handle_timer()
    with pytest.raises(NotFound):
        vhost.queue("q")


def test_purge_counts_ready_messages_only() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    for i in range(3):
        publish(vhost, "", "q", f"m{i}")
    assert vhost.get("q", no_ack=False) is not None
    assert broker.queued_bytes == 6
    assert vhost.purge_queue("q") == 2
    assert vhost.queue("q").message_count == 0
    assert vhost.queue("q").unacked_count == 1
    assert broker.queued_bytes == 2
    assert vhost.purge_queue("q") == 0


def test_delete_if_unused_and_if_empty() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    publish(vhost, "", "q")
    consumer = RecordingConsumer(accepting=False)
    vhost.consume("q", consumer, tag="c", no_ack=False)
    with pytest.raises(PreconditionFailed) as info:
        vhost.delete_queue("q", if_unused=True)
    assert info.value.text == "PRECONDITION_FAILED - queue 'q' in vhost '/' in use"
    with pytest.raises(PreconditionFailed) as info:
        vhost.delete_queue("q", if_empty=True)
    assert info.value.text == "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty"
    assert vhost.delete_queue("q") == 1
    assert consumer.cancelled == 1
    assert broker.queued_bytes == 0
    assert vhost.delete_queue("q") == 0  # missing: fine, as RabbitMQ


def test_deleting_a_queue_settles_its_deliveries_and_cancels_consumers() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q")
    consumer = RecordingConsumer()
    sub = vhost.consume("q", consumer, tag="c", no_ack=False)
    publish(vhost, "", "q", "abc")
    (delivery,) = consumer.deliveries
    vhost.delete_queue("q")
    assert consumer.cancelled == 1
    assert not sub.active
    assert sub.unacked == 0
    assert delivery.settled
    assert not delivery.queue.ack(delivery)  # the ack of a gone delivery is a no-op
    assert broker.queued_bytes == 0
    assert publish(vhost, "", "q") == []


def test_queues_listing() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("a")
    vhost.declare_queue("b")
    assert [q.name for q in vhost.queues()] == ["a", "b"]
    vhost.bind_queue("a", "amq.topic", "x.#", {"k": "v"})
    (binding,) = vhost.bindings()
    assert (binding.source, binding.destination, binding.routing_key) == ("amq.topic", "a", "x.#")
    assert binding.destination_is_queue
    assert binding.arguments == {"k": "v"}
