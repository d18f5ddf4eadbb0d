"""A channel consumer takes its queue's backlog in batches (``ChannelConsumer.deliver_many``):
the bytes are those of one delivery at a time, tags stay contiguous, and a batch that cannot
be sent goes back to the queue. Also the multiple-ack shortcut (``take_covered``)."""

from __future__ import annotations

import pytest
from pamqp import commands

from gateway.amqp.channel_consume import take_covered
from gateway.amqp.fastpath import CHUNKED_BODY_THRESHOLD, encode_basic_ack, encode_deliver
from gateway.core.consumers import Delivery
from gateway.core.errors import PreconditionFailed
from gateway.core.message import Message, Properties

from .helpers import Client, connected, consume, declare, make_context


def _consumer_behind(backlog: list[bytes], prefetch: int) -> tuple[Client, str]:
    """A client consuming queue "q" with ``prefetch``, its first window already delivered."""
    client = connected(make_context())
    queue = declare(client, "q")
    for body in backlog:
        client.publish(1, body, routing_key=queue)
    client.call(1, commands.Basic.Qos(prefetch_count=prefetch))
    client.one(commands.Basic.QosOk)
    consume(client, queue, consumer_tag="ct")
    return client, queue


def test_a_refill_is_one_write_with_the_bytes_of_single_deliveries() -> None:
    bodies = [f"m{i}".encode() for i in range(7)]
    client, queue = _consumer_behind(bodies, 3)
    client.frames()
    notified = client.notified
    client.send(encode_basic_ack(1, 3, multiple=True))
    out = client.conn.data_to_send_chunks()
    expected = b"".join(
        encode_deliver(1, "ct", tag, False, "", queue, b"\x00\x00", body, client.conn.frame_max)
        for tag, body in zip((4, 5, 6), bodies[3:6], strict=True)
    )
    assert out == [expected]  # one chunk for the batch
    assert client.notified == notified + 1
    assert list(client.handler.channels[1].unacked) == [4, 5, 6]


def test_large_bodies_in_a_batch_are_referenced_not_copied() -> None:
    big = b"B" * (CHUNKED_BODY_THRESHOLD + 1)
    client, _ = _consumer_behind([b"a", big, b"c"], 1)
    assert [f.body for f in client.frames()] == [b"a"]
    client.send(encode_basic_ack(1, 1) + encode_basic_ack(1, 2))
    chunks = client.conn.data_to_send_chunks()
    assert any(isinstance(chunk, memoryview) for chunk in chunks)
    client.push_back([])
    from .helpers import parse

    frames = parse(b"".join(bytes(chunk) for chunk in chunks))
    assert [(f.method.delivery_tag, f.body) for f in frames] == [(2, big), (3, b"c")]


def test_redelivered_messages_keep_the_flag_in_a_batch() -> None:
    client, _ = _consumer_behind([b"a", b"b", b"c"], 2)
    client.frames()
    client.call(1, commands.Basic.Nack(delivery_tag=2, multiple=True, requeue=True))
    frames = client.frames()
    assert [(f.method.delivery_tag, f.body, f.method.redelivered) for f in frames] == [
        (3, b"a", True),
        (4, b"b", True),
    ]


def test_a_batch_for_a_channel_that_is_gone_goes_back_to_the_queue() -> None:
    client, queue = _consumer_behind([b"a", b"b", b"c"], 1)
    client.frames()
    ch = client.handler.channels[1]
    [consumer] = ch.consumers.values()
    vhost = client.context.broker.vhost("/")
    q = vhost.queue(queue)
    # The machine closed the channel; the adapter has not torn it down yet.
    assert client.conn.close_channel(1, 406, "PRECONDITION_FAILED - test")
    client.conn.data_to_send()
    sub = consumer.subscription
    assert sub is not None
    taken: list[Delivery] = []
    entry = q._ready.popleft()
    q._ready_bytes -= len(entry.message.body)
    delivery = Delivery(q, entry, sub)
    q._unacked[entry.seq] = delivery
    sub._unacked[entry.seq] = delivery
    taken.append(delivery)
    tag = ch.next_tag
    consumer.deliver_many(taken)
    assert client.conn.data_to_send() == b""
    assert not consumer.started
    assert ch.next_tag == tag
    assert delivery.settled
    assert [e.message.body for e in q.ready_entries()] == [b"b", b"c"]
    assert q._ready[0].redelivered


def test_core_messages_without_raw_properties_in_a_batch() -> None:
    context = make_context()
    client = connected(context)
    queue = declare(client, "q")
    props = Properties(content_type="application/json")
    vhost = context.broker.vhost("/")
    for body in (b"1", b"2", b"3"):
        vhost.publish("", Message("", queue, body, properties=props))
    client.call(1, commands.Basic.Qos(prefetch_count=1))
    client.one(commands.Basic.QosOk)
    consume(client, queue)
    client.frames()
    client.send(encode_basic_ack(1, 1))
    client.send(encode_basic_ack(1, 2))
    frames = client.frames()
    assert [f.body for f in frames] == [b"2", b"3"]
    assert all(f.properties.content_type == "application/json" for f in frames)


# -- take_covered ------------------------------------------------------------------------------


def _tags(*tags: int) -> dict[int, Delivery]:
    return {tag: object() for tag in tags}  # type: ignore[misc]


@pytest.mark.parametrize(
    ("tag", "covered", "left"),
    [
        (0, [1, 2, 5, 9], []),
        (9, [1, 2, 5, 9], []),
        (5, [1, 2, 5], [9]),
        (1, [1], [2, 5, 9]),
    ],
)
def test_take_covered(tag: int, covered: list[int], left: list[int]) -> None:
    unacked = _tags(1, 2, 5, 9)
    expected = [unacked[t] for t in covered]
    assert take_covered(unacked, tag) == expected
    assert list(unacked) == left


@pytest.mark.parametrize("tag", [3, 10])
def test_take_covered_unknown_tag_takes_nothing(tag: int) -> None:
    unacked = _tags(1, 2, 5, 9)
    with pytest.raises(PreconditionFailed, match=f"unknown delivery tag {tag}"):
        take_covered(unacked, tag)
    assert list(unacked) == [1, 2, 5, 9]


def test_take_covered_of_nothing_pending() -> None:
    assert take_covered({}, 0) == []
    with pytest.raises(PreconditionFailed):
        take_covered({}, 1)


@pytest.mark.parametrize(("confirms", "backlog"), [(False, 2000), (True, 2000), (False, 0)])
def test_bench_s3_in_one_process_delivers_every_message(confirms: bool, backlog: int) -> None:
    # bench/core_micro.py's S3 driver: two publishers, a backlog, batched refills after
    # multiple acks, confirms; it checks that every message reached the consumer.
    from bench.core_micro import run_s3

    assert run_s3(3000, confirms=confirms, backlog=backlog) > 0
