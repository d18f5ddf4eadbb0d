from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.reply import queue_for_reply_topic, reply_topic_for_queue
from gateway.mqtt.topics import validate_topic_name


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s))
def test_reply_topic_round_trips_every_queue_name(queue: str) -> None:
    topic = reply_topic_for_queue(queue)
    validate_topic_name(topic)
    assert "+" not in topic
    assert "#" not in topic
    assert topic.count("/") == 2
    assert queue_for_reply_topic(topic) == queue


def test_direct_reply_to_name_stays_readable() -> None:
    name = "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyNzc4ODg0Mw==.X3dC"
    assert reply_topic_for_queue(name) == "$amqp/reply/" + name


def test_other_topics_are_not_reply_topics() -> None:
    assert queue_for_reply_topic("sensors/1") is None
    assert queue_for_reply_topic("$amqp/reply/") is None
    assert queue_for_reply_topic("$amqp/reply/a/b") is None
