"""Property: whatever a client does with delivery tags, no message is lost or duplicated.

Random sequences of consume, get, ack, nack, reject, recover, bad tags and channel closes
against one queue with a dead-letter queue; after every step each published message is in
exactly one place: ready in the queue, unacked on the channel, dead-lettered, or acked.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands

from .helpers import Client, connected, declare, make_context

MESSAGES = 6

KINDS = (
    "consume", "get", "ack", "ack_multi", "nack", "nack_multi", "reject", "recover", "bad_tag",
    "close",
)  # fmt: skip
OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 7), st.booleans()),
    max_size=25,
)


def _reset_channel(client: Client) -> None:
    """After a channel.close from the server (or our own), open channel 1 again."""
    for frame in client.frames():
        if isinstance(frame.method, commands.Channel.Close):
            client.call(1, commands.Channel.CloseOk())
    if 1 not in client.handler.channels:
        client.open_channel(1)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_messages_are_conserved(ops: list[tuple[str, int, bool]]) -> None:
    context = make_context()
    client = connected(context)
    declare(client, "dlq")
    declare(
        client, "q", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}
    )
    for i in range(MESSAGES):
        client.publish(1, str(i).encode(), routing_key="q")
    vhost = context.broker.vhost("/")
    queue, dlq = vhost.queue("q"), vhost.queue("dlq")
    acked: list[bytes] = []
    for op, pick, flag in ops:
        ch = client.handler.channels.get(1)
        assert ch is not None
        assert ch.open
        tags = list(ch.unacked)
        tag = tags[pick % len(tags)] if tags else None
        if op == "consume":
            client.call(1, commands.Basic.Qos(prefetch_count=pick % 3))
            client.call(1, commands.Basic.Consume(queue="q", no_ack=False))
        elif op == "get":
            client.call(1, commands.Basic.Get(queue="q", no_ack=flag))
            if flag:
                acked.extend(f.body for f in client.frames() if f.method.name == "Basic.GetOk")
        elif op in ("ack", "ack_multi") and tag is not None:
            multiple = op == "ack_multi"
            covered = [t for t in tags if t <= tag] if multiple else [tag]
            acked.extend(ch.unacked[t].message.body for t in covered)
            client.call(1, commands.Basic.Ack(delivery_tag=tag, multiple=multiple))
        elif op in ("nack", "nack_multi") and tag is not None:
            client.call(1, commands.Basic.Nack(tag, op == "nack_multi", flag))
        elif op == "reject" and tag is not None:
            client.call(1, commands.Basic.Reject(delivery_tag=tag, requeue=flag))
        elif op == "recover":
            client.call(1, commands.Basic.Recover(requeue=True))
        elif op == "bad_tag":
            client.call(1, commands.Basic.Ack(delivery_tag=1000 + pick))
        elif op == "close":
            client.call(1, commands.Channel.Close(200, "", 0, 0))
        _reset_channel(client)
        assert not client.conn.closed

        ch = client.handler.channels[1]
        ready = [e.message.body for e in queue.ready_entries()]
        unacked = [d.message.body for d in ch.unacked.values()]
        dead = [e.message.body for e in dlq.ready_entries()]
        everywhere = Counter(ready + unacked + dead + acked)
        assert everywhere == Counter(str(i).encode() for i in range(MESSAGES))
        assert queue.unacked_count == len(unacked)
