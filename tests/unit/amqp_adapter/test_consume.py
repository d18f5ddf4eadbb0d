"""Consuming: consume-ok ordering, delivery tags, ack/nack/reject, prefetch, get, recover."""

from __future__ import annotations

import pytest
from pamqp import commands

from gateway.amqp.spec import NOT_IMPLEMENTED, PRECONDITION_FAILED
from gateway.core.message import Message, Properties

from .helpers import Client, connected, consume, content_frames, declare, make_context, method_frame


def deliveries(client: Client) -> list[tuple[int, bytes, bool]]:
    out = []
    for frame in client.frames():
        assert isinstance(frame.method, commands.Basic.Deliver), frame.method
        tag = frame.method.delivery_tag
        assert tag is not None
        out.append((tag, frame.body, frame.method.redelivered))
    return out


def setup_queue(*messages: bytes) -> tuple[Client, str]:
    context = make_context()
    client = connected(context)
    queue = declare(client, "q")
    for body in messages:
        client.publish(1, body, routing_key=queue)
    return client, queue


def test_consume_ok_comes_before_the_deliveries() -> None:
    client, queue = setup_queue(b"a", b"b")
    client.call(1, commands.Basic.Consume(queue=queue, consumer_tag="c1"))
    frames = client.frames()
    assert isinstance(frames[0].method, commands.Basic.ConsumeOk)
    assert frames[0].method.consumer_tag == "c1"
    assert [(f.method.delivery_tag, f.body) for f in frames[1:]] == [(1, b"a"), (2, b"b")]
    assert all(f.method.consumer_tag == "c1" for f in frames[1:])


def test_server_generated_consumer_tag() -> None:
    client, queue = setup_queue()
    tag = consume(client, queue)
    assert tag.startswith("amq.ctag-")
    assert len(tag) > len("amq.ctag-") + 10


def test_nowait_consume_sends_nothing_but_deliveries() -> None:
    client, queue = setup_queue(b"a")
    client.call(1, commands.Basic.Consume(queue=queue, consumer_tag="c", nowait=True))
    assert deliveries(client) == [(1, b"a", False)]


def test_raw_properties_are_delivered_byte_for_byte() -> None:
    client, queue = setup_queue()
    props = commands.Basic.Properties(
        content_type="text/plain",
        headers={"k": "v", "n": 7, "nested": {"a": [1, 2]}},
        delivery_mode=2,
        correlation_id="c-1",
        message_id="m-1",
        timestamp=None,
        app_id="unit",
    )
    client.publish(1, b"payload", routing_key=queue, properties=props)
    assert client.frames() == []
    consume(client, queue, no_ack=True)
    [frame] = client.frames()
    assert frame.properties.headers == {"k": "v", "n": 7, "nested": {"a": [1, 2]}}
    assert frame.properties.correlation_id == "c-1"
    # The header frame carries exactly the publisher's encoding.
    from pamqp import frame as pamqp_frame
    from pamqp import header as pamqp_header

    header = pamqp_header.ContentHeader(0, 7, props)
    assert frame.raw_properties == pamqp_frame.marshal(header, 1)[7 + 12 : -1]


def test_core_message_without_raw_properties_is_encoded() -> None:
    context = make_context()
    client = connected(context)
    queue = declare(client, "q")
    consume(client, queue, no_ack=True)
    props = Properties(content_type="application/json", delivery_mode=2, headers={"x-q": 1})
    context.broker.vhost("/").publish("", Message("", queue, b"{}", properties=props))
    [frame] = client.frames()
    assert frame.properties.content_type == "application/json"
    assert frame.properties.headers == {"x-q": 1}
    assert frame.properties.delivery_mode == 2
    assert client.notified >= 1  # the shell was told there is output


def test_ack_single_and_multiple() -> None:
    client, queue = setup_queue(b"1", b"2", b"3", b"4")
    consume(client, queue)
    assert [tag for tag, _, _ in deliveries(client)] == [1, 2, 3, 4]
    q = client.context.broker.vhost("/").queue(queue)
    client.call(1, commands.Basic.Ack(delivery_tag=2))
    assert q.unacked_count == 3
    client.call(1, commands.Basic.Ack(delivery_tag=3, multiple=True))
    assert q.unacked_count == 1
    assert list(client.handler.channels[1].unacked) == [4]
    client.call(1, commands.Basic.Ack(delivery_tag=0, multiple=True))
    assert q.unacked_count == 0
    assert client.frames() == []


@pytest.mark.parametrize(
    ("tag", "multiple"), [(9, False), (0, False), (9, True)], ids=["single", "zero", "multiple"]
)
def test_unknown_delivery_tag_closes_the_channel_with_406(tag: int, multiple: bool) -> None:
    client, queue = setup_queue(b"1")
    consume(client, queue)
    deliveries(client)
    client.call(1, commands.Basic.Ack(delivery_tag=tag, multiple=multiple))
    close = client.one(commands.Channel.Close)
    assert close.reply_code == PRECONDITION_FAILED
    assert close.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {tag}"
    assert (close.class_id, close.method_id) == (60, 80)
    # Only the channel: the connection lives, the message went back to the queue.
    assert not client.conn.closed
    assert client.context.broker.vhost("/").queue(queue).message_count == 1
    client.call(1, commands.Channel.CloseOk())
    client.open_channel(1)


def test_double_ack_is_an_unknown_tag() -> None:
    client, queue = setup_queue(b"1")
    consume(client, queue)
    deliveries(client)
    client.call(1, commands.Basic.Ack(delivery_tag=1))
    client.call(1, commands.Basic.Ack(delivery_tag=1))
    assert client.one(commands.Channel.Close).reply_code == PRECONDITION_FAILED


def test_nack_requeue_redelivers_with_the_flag() -> None:
    client, queue = setup_queue(b"1", b"2")
    consume(client, queue, consumer_tag="c")
    assert deliveries(client) == [(1, b"1", False), (2, b"2", False)]
    client.call(1, commands.Basic.Nack(delivery_tag=2, multiple=True, requeue=True))
    assert deliveries(client) == [(3, b"1", True), (4, b"2", True)]


def test_reject_without_requeue_dead_letters() -> None:
    context = make_context()
    client = connected(context)
    declare(client, "dlq")
    declare(
        client, "q", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}
    )
    client.publish(1, b"bad", routing_key="q")
    consume(client, "q")
    [(tag, _, _)] = deliveries(client)
    client.call(1, commands.Basic.Reject(delivery_tag=tag, requeue=False))
    client.call(1, commands.Basic.Get(queue="dlq", no_ack=True))
    [frame] = client.frames()
    assert frame.body == b"bad"
    death = frame.properties.headers["x-death"][0]
    assert (death["reason"], death["queue"]) == ("rejected", "q")


def test_per_consumer_prefetch() -> None:
    client, queue = setup_queue(*(str(i).encode() for i in range(5)))
    client.call(1, commands.Basic.Qos(prefetch_count=2))
    client.one(commands.Basic.QosOk)
    consume(client, queue)
    assert [tag for tag, _, _ in deliveries(client)] == [1, 2]
    client.call(1, commands.Basic.Ack(delivery_tag=1))
    assert [tag for tag, _, _ in deliveries(client)] == [3]


def test_global_prefetch_is_shared_by_the_channel_consumers() -> None:
    context = make_context()
    client = connected(context)
    for name in ("a", "b"):
        declare(client, name)
        for i in range(3):
            client.publish(1, f"{name}{i}".encode(), routing_key=name)
    client.call(1, commands.Basic.Qos(prefetch_count=3, global_=True))
    client.one(commands.Basic.QosOk)
    consume(client, "a")
    first = deliveries(client)
    assert len(first) == 3
    # The channel-wide limit is used up: the second consumer gets nothing yet.
    consume(client, "b")
    assert client.frames() == []
    client.call(1, commands.Basic.Ack(delivery_tag=0, multiple=True))
    second = deliveries(client)
    assert len(second) == 3
    bodies = sorted(body for _, body, _ in first + second)
    assert bodies == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]


def test_prefetch_size_is_not_implemented() -> None:
    client, _ = setup_queue()
    client.call(1, commands.Basic.Qos(prefetch_size=10))
    close = client.one(commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        NOT_IMPLEMENTED,
        "NOT_IMPLEMENTED - prefetch_size!=0 (10)",
    )


def test_cancel_keeps_unacked_deliveries_ackable() -> None:
    client, queue = setup_queue(b"1", b"2")
    client.call(1, commands.Basic.Qos(prefetch_count=1))
    client.frames()
    tag = consume(client, queue)
    [(delivery_tag, _, _)] = deliveries(client)
    client.call(1, commands.Basic.Cancel(consumer_tag=tag))
    assert client.one(commands.Basic.CancelOk).consumer_tag == tag
    client.call(1, commands.Basic.Ack(delivery_tag=delivery_tag))
    q = client.context.broker.vhost("/").queue(queue)
    assert (q.message_count, q.unacked_count, q.consumer_count) == (1, 0, 0)
    # Unknown tags are answered too (the spec says to ignore them).
    client.call(1, commands.Basic.Cancel(consumer_tag="nobody"))
    assert client.one(commands.Basic.CancelOk).consumer_tag == "nobody"


def test_basic_get_and_get_empty() -> None:
    client, queue = setup_queue(b"1", b"2")
    client.call(1, commands.Basic.Get(queue=queue))
    [frame] = client.frames()
    assert isinstance(frame.method, commands.Basic.GetOk)
    assert (frame.method.delivery_tag, frame.method.message_count, frame.body) == (1, 1, b"1")
    assert frame.method.routing_key == queue
    client.call(1, commands.Basic.Get(queue=queue, no_ack=True))
    assert client.frames()[0].method.delivery_tag == 2
    client.call(1, commands.Basic.Get(queue=queue))
    client.one(commands.Basic.GetEmpty)
    # basic.get deliveries share the tag space and are acked like any other.
    client.call(1, commands.Basic.Ack(delivery_tag=1))
    assert client.frames() == []
    assert client.context.broker.vhost("/").queue(queue).unacked_count == 0


def test_recover_requeues_everything_unacked() -> None:
    client, queue = setup_queue(b"1", b"2")
    client.call(1, commands.Basic.Get(queue=queue))
    client.call(1, commands.Basic.Get(queue=queue))
    client.frames()
    client.call(1, commands.Basic.Recover(requeue=True))
    client.one(commands.Basic.RecoverOk)
    q = client.context.broker.vhost("/").queue(queue)
    assert (q.message_count, q.unacked_count) == (2, 0)
    client.call(1, commands.Basic.Get(queue=queue, no_ack=True))
    [frame] = client.frames()
    assert (frame.body, frame.method.redelivered) == (b"1", True)
    client.call(1, commands.Basic.Recover(requeue=False))
    assert client.one(commands.Connection.Close).reply_code == NOT_IMPLEMENTED


def test_exclusive_consumer_locks_out_others() -> None:
    client, queue = setup_queue()
    consume(client, queue, exclusive=True)
    client.call(1, commands.Basic.Consume(queue=queue))
    close = client.one(commands.Channel.Close)
    assert close.reply_code == 403
    assert close.reply_text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"


def test_paused_socket_stops_deliveries_until_it_drains() -> None:
    client, queue = setup_queue()
    consume(client, queue)
    client.handler.set_writable(False)
    client.publish(1, b"held", routing_key=queue)
    assert client.frames() == []
    assert client.context.broker.vhost("/").queue(queue).message_count == 1
    client.handler.set_writable(True)
    assert deliveries(client) == [(1, b"held", False)]


def test_header_values_amqp_cannot_carry_are_dropped_not_fatal() -> None:
    context = make_context()
    client = connected(context)
    queue = declare(client, "q")
    consume(client, queue, no_ack=True)
    props = Properties(content_type="text/plain", headers={"odd": {1, 2}})
    context.broker.vhost("/").publish("", Message("", queue, b"body", properties=props))
    [frame] = client.frames()
    assert frame.body == b"body"
    assert frame.properties.content_type == "text/plain"
    assert frame.properties.headers is None


def test_recover_async_requeues_without_an_answer() -> None:
    client, queue = setup_queue(b"1")
    client.call(1, commands.Basic.Get(queue=queue))
    client.frames()
    # Deprecated in 0-9-1 (pamqp warns when building it), still sent by old clients.
    with pytest.warns(DeprecationWarning, match="deprecated"):
        recover = commands.Basic.RecoverAsync(requeue=True)
    client.call(1, recover)
    assert client.frames() == []
    assert client.context.broker.vhost("/").queue(queue).message_count == 1


def test_content_other_than_publish_from_the_client_is_command_invalid() -> None:
    client, _ = setup_queue()
    deliver = commands.Basic.Deliver(consumer_tag="x", delivery_tag=1, exchange="", routing_key="q")
    client.send(method_frame(1, deliver) + content_frames(1, b"x"))
    close = client.one(commands.Connection.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (503, 60, 60)


def test_multiple_ack_refills_the_prefetch_window_in_order() -> None:
    client, queue = setup_queue(*(str(i).encode() for i in range(9)))
    client.call(1, commands.Basic.Qos(prefetch_count=4))
    client.one(commands.Basic.QosOk)
    consume(client, queue)
    assert [tag for tag, _, _ in deliveries(client)] == [1, 2, 3, 4]
    client.call(1, commands.Basic.Ack(delivery_tag=2))  # a gap below the multiple ack
    assert [body for _, body, _ in deliveries(client)] == [b"4"]
    client.call(1, commands.Basic.Ack(delivery_tag=4, multiple=True))  # settles 1, 3 and 4
    assert deliveries(client) == [(6, b"5", False), (7, b"6", False), (8, b"7", False)]
    assert list(client.handler.channels[1].unacked) == [5, 6, 7, 8]
    q = client.context.broker.vhost("/").queue(queue)
    assert (q.unacked_count, q.message_count) == (4, 1)
