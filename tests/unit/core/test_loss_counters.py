"""Messages that leave a queue without being consumed are counted (for /metrics)."""

from __future__ import annotations

from tests.unit.core.helpers import make_broker, msg


def test_drop_head_refuse_and_expiry_are_counted() -> None:
    _, vh, clock = make_broker()
    vh.declare_queue("head", arguments={"x-max-length": 2})
    vh.declare_queue("refuse", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    vh.declare_queue("ttl", arguments={"x-message-ttl": 1000})
    for _ in range(5):
        vh.publish("", msg(routing_key="head"))
        vh.publish("", msg(routing_key="refuse"))
    vh.publish("", msg(routing_key="ttl"))
    clock.advance(2)
    assert vh.get("ttl", no_ack=True) is None
    head, refuse, ttl = vh.queue("head"), vh.queue("refuse"), vh.queue("ttl")
    assert (head.dropped, head.refused, head.message_count) == (3, 0, 2)
    assert (refuse.dropped, refuse.refused, refuse.message_count) == (0, 4, 1)
    assert (ttl.expired, ttl.message_count) == (1, 0)


def test_admission_policy_declines_without_refusing_the_publish() -> None:
    _, vh, _ = make_broker()
    vh.declare_queue("q")
    queue = vh.queue("q")
    queue.admit = lambda message: message.body != b"noise"
    result = vh.publish("", msg(b"noise", routing_key="q"))
    # Declined by policy is not a reject-publish refusal: publishers are not nacked.
    assert (result.routed, [q.name for q in result.queues], result.rejected) == (True, ["q"], [])
    vh.publish("", msg(b"kept", routing_key="q"))
    assert (queue.message_count, queue.dropped) == (1, 1)
    queue.admit = None
    vh.publish("", msg(b"noise", routing_key="q"))
    assert queue.message_count == 2
