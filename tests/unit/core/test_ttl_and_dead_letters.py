"""Message TTL, length limits and dead-lettering with x-death bookkeeping."""

from __future__ import annotations

import datetime

from gateway.core.consumers import Delivery
from gateway.core.vhost import VirtualHost

from .helpers import RecordingConsumer, make_broker, msg, publish


def ready_bodies(vhost: VirtualHost, queue: str) -> list[bytes]:
    return [e.message.body for e in vhost.queue(queue).ready_entries()]


def with_dlq(vhost: VirtualHost, **arguments: object) -> None:
    """Queue "q" dead-lettering through fanout "dlx" into "dlq"."""
    vhost.declare_exchange("dlx", "fanout")
    vhost.declare_queue("dlq")
    vhost.bind_queue("dlq", "dlx", "")
    vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx", **arguments})


def test_queue_ttl_expires_at_the_head() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q", arguments={"x-message-ttl": 1000})
    publish(vhost, "", "q", "old")
    clock.advance(0.5)
    publish(vhost, "", "q", "new")
    assert broker.next_timer() == 1001.0
    clock.advance(0.5)
    broker.handle_timer()
    assert ready_bodies(vhost, "q") == [b"new"]
    assert broker.next_timer() == 1001.5
    clock.advance(10)
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=True)  # expired before the timer ran
    assert consumer.deliveries == []
    assert broker.queued_bytes == 0


def test_expired_messages_are_never_fetched() -> None:
    _, vhost, clock = make_broker()
    vhost.declare_queue("q")
    publish(vhost, "", "q", "short", expiration="100")
    publish(vhost, "", "q", "long")
    clock.advance(0.2)
    got = vhost.get("q", no_ack=True)
    assert got is not None
    assert got[0].message.body == b"long"
    assert got[1] == 0


def test_per_message_and_queue_ttl_take_the_minimum() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-message-ttl": 5000})
    publish(vhost, "", "q", "a", expiration="2000")
    publish(vhost, "", "q", "b", expiration="9000")
    entries = vhost.queue("q").ready_entries()
    assert [e.expires_at for e in entries] == [1002.0, 1005.0]
    assert broker.next_timer() == 1002.0


def test_per_message_expiry_waits_behind_the_head() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_queue("q")
    publish(vhost, "", "q", "forever")
    publish(vhost, "", "q", "brief", expiration="10")
    assert broker.next_timer() is None  # only the head counts, as in RabbitMQ
    clock.advance(1)
    got = vhost.get("q", no_ack=True)
    assert got is not None
    assert got[0].message.body == b"forever"
    assert vhost.get("q", no_ack=True) is None  # "brief" expired once it reached the head


def test_zero_ttl_goes_to_a_ready_consumer_or_expires() -> None:
    _, vhost, _ = make_broker()
    with_dlq(vhost, **{"x-message-ttl": 0})
    publish(vhost, "", "q", "nobody")
    assert ready_bodies(vhost, "dlq") == [b"nobody"]
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False)
    publish(vhost, "", "q", "taken")
    assert consumer.bodies == [b"taken"]
    assert ready_bodies(vhost, "dlq") == [b"nobody"]


def test_requeued_message_keeps_its_deadline() -> None:
    broker, vhost, clock = make_broker()
    with_dlq(vhost, **{"x-message-ttl": 1000})
    publish(vhost, "", "q", "m")
    got = vhost.get("q", no_ack=False)
    assert got is not None
    clock.advance(2)
    vhost.queue("q").reject(got[0], requeue=True)
    broker.handle_timer()
    assert ready_bodies(vhost, "q") == []
    assert ready_bodies(vhost, "dlq") == [b"m"]


def test_max_length_drop_head_dead_letters_the_oldest() -> None:
    _, vhost, _ = make_broker()
    with_dlq(vhost, **{"x-max-length": 2})
    for body in ("a", "b", "c", "d"):
        assert publish(vhost, "", "q", body) == ["q"]
    assert ready_bodies(vhost, "q") == [b"c", b"d"]
    assert ready_bodies(vhost, "dlq") == [b"a", b"b"]
    death = vhost.queue("dlq").ready_entries()[0].message.properties.headers
    assert death is not None
    assert death["x-first-death-reason"] == "maxlen"


def test_max_length_bytes() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-max-length-bytes": 5})
    publish(vhost, "", "q", "abc")
    publish(vhost, "", "q", "de")
    publish(vhost, "", "q", "f")
    assert ready_bodies(vhost, "q") == [b"de", b"f"]


def test_unacked_messages_do_not_count_towards_the_limit() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    consumer = RecordingConsumer()
    vhost.consume("q", consumer, tag="c", no_ack=False, prefetch=1)
    assert publish(vhost, "", "q", "a") == ["q"]
    assert publish(vhost, "", "q", "b") == ["q"]
    assert publish(vhost, "", "q", "c") == []


def test_reject_publish() -> None:
    _, vhost, _ = make_broker()
    with_dlq(vhost, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    vhost.declare_queue("other")
    vhost.bind_queue("q", "amq.fanout", "")
    vhost.bind_queue("other", "amq.fanout", "")
    first = vhost.publish("amq.fanout", msg("a"))
    assert [q.name for q in first.queues] == ["q", "other"]
    assert first.rejected == []
    second = vhost.publish("amq.fanout", msg("b"))
    assert [q.name for q in second.queues] == ["other"]
    assert [q.name for q in second.rejected] == ["q"]
    assert second.routed
    assert ready_bodies(vhost, "q") == [b"a"]
    assert ready_bodies(vhost, "dlq") == []  # plain reject-publish does not dead-letter


def test_reject_publish_dlx() -> None:
    _, vhost, _ = make_broker()
    with_dlq(vhost, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    publish(vhost, "", "q", "a")
    assert vhost.publish("", msg("b", "q")).rejected
    assert ready_bodies(vhost, "dlq") == [b"b"]


def test_dead_letter_on_reject_with_routing_key_and_headers() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("dlx", "direct")
    vhost.declare_queue("dlq")
    vhost.bind_queue("dlq", "dlx", "dead")
    vhost.declare_queue(
        "q",
        arguments={"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead"},
    )
    vhost.bind_queue("q", "amq.direct", "orig")
    vhost.publish(
        "amq.direct",
        msg("m", "orig", exchange="amq.direct", headers={"app": 1}, expiration="60000"),
    )
    got = vhost.get("q", no_ack=False)
    assert got is not None
    vhost.queue("q").reject(got[0], requeue=False)
    (entry,) = vhost.queue("dlq").ready_entries()
    dead = entry.message
    assert (dead.exchange, dead.routing_key) == ("dlx", "dead")
    assert dead.body is got[0].message.body  # shared, not copied
    props = dead.properties
    assert props.expiration is None
    assert dead.expiration_ms is None
    headers = props.headers
    assert headers is not None
    assert headers["app"] == 1
    assert headers["x-first-death-reason"] == "rejected"
    assert headers["x-first-death-queue"] == "q"
    assert headers["x-first-death-exchange"] == "amq.direct"
    assert headers["x-last-death-queue"] == "q"
    assert headers["x-death"] == [
        {
            "count": 1,
            "reason": "rejected",
            "queue": "q",
            "time": datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC),
            "exchange": "amq.direct",
            "routing-keys": ["orig"],
            "original-expiration": "60000",
        }
    ]
    # The original message is untouched.
    assert got[0].message.properties.headers == {"app": 1}


def test_x_death_counts_repeat_deaths_and_moves_them_to_front() -> None:
    _, vhost, _ = make_broker()
    # work -> (rejected) -> retry (TTL) -> (expired) -> work, twice round.
    vhost.declare_exchange("retry-x", "fanout")
    vhost.declare_exchange("work-x", "fanout")
    vhost.declare_queue("work", arguments={"x-dead-letter-exchange": "retry-x"})
    vhost.declare_queue(
        "retry", arguments={"x-dead-letter-exchange": "work-x", "x-message-ttl": 10}
    )
    vhost.bind_queue("retry", "retry-x", "")
    vhost.bind_queue("work", "work-x", "")
    publish(vhost, "", "work", "job")
    broker, clock = vhost.broker, vhost.broker.clock
    for _ in range(2):
        got = vhost.get("work", no_ack=False)
        assert got is not None
        vhost.queue("work").reject(got[0], requeue=False)
        clock.advance(1)  # type: ignore[attr-defined]
        broker.handle_timer()
    (entry,) = vhost.queue("work").ready_entries()
    headers = entry.message.properties.headers
    assert headers is not None
    deaths = headers["x-death"]
    assert isinstance(deaths, list)
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        ("retry", "expired", 2),
        ("work", "rejected", 2),
    ]
    assert headers["x-first-death-queue"] == "work"
    assert headers["x-last-death-queue"] == "retry"
    assert headers["x-last-death-reason"] == "expired"


def test_automatic_dead_letter_cycle_is_dropped() -> None:
    broker, vhost, clock = make_broker()
    vhost.declare_exchange("loop", "fanout")
    vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "loop", "x-message-ttl": 10})
    vhost.bind_queue("q", "loop", "")
    publish(vhost, "", "q", "m")
    clock.advance(1)
    broker.handle_timer()
    assert ready_bodies(vhost, "q") == []
    assert broker.queued_bytes == 0
    assert broker.next_timer() is None


def test_cycle_with_a_rejection_goes_on() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("loop", "fanout")
    vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "loop"})
    vhost.bind_queue("q", "loop", "")
    publish(vhost, "", "q", "m")
    for expected_count in (1, 2, 3):
        got = vhost.get("q", no_ack=False)
        assert got is not None
        vhost.queue("q").reject(got[0], requeue=False)
        (entry,) = vhost.queue("q").ready_entries()
        headers = entry.message.properties.headers
        assert headers is not None
        deaths = headers["x-death"]
        assert isinstance(deaths, list)
        assert deaths[0]["count"] == expected_count


def test_dead_letter_to_missing_exchange_drops() -> None:
    broker, vhost, _ = make_broker()
    vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "nowhere"})
    publish(vhost, "", "q")
    got = vhost.get("q", no_ack=False)
    assert got is not None
    vhost.queue("q").reject(got[0], requeue=False)
    assert broker.queued_bytes == 0


def test_dead_letter_copy_keeps_persistence() -> None:
    _, vhost, _ = make_broker()
    with_dlq(vhost)
    vhost.publish("", msg("m", "q", persistent=True))
    got = vhost.get("q", no_ack=False)
    assert got is not None
    delivery: Delivery = got[0]
    vhost.queue("q").reject(delivery, requeue=False)
    (entry,) = vhost.queue("dlq").ready_entries()
    assert entry.message.persistent
    assert entry.message.id != delivery.message.id
