"""Reply addresses that let an MQTT 5 responder answer an AMQP requester.

An AMQP request names its reply queue in ``reply_to`` (a plain queue, or RabbitMQ's direct
reply-to pseudo queue). MQTT has no queues, so the MQTT 5 subscriber sees a Response Topic in a
reserved namespace, ``$amqp/reply/<queue>``; a publish to such a topic goes to the default
exchange with the queue name as routing key, which is exactly how an AMQP responder answers.

The queue name sits in one topic level, so the characters MQTT gives meaning to are
percent-escaped (``%``, ``/``, ``+``, ``#``); the mapping is reversible for every queue name.
The leading ``$`` keeps these topics away from ``#`` and ``+`` subscribers (MQTT-4.7.2-1).
"""

from __future__ import annotations

REPLY_TOPIC_PREFIX = "$amqp/reply/"

# The default exchange: a routing key there is a queue name.
REPLY_EXCHANGE = ""


def reply_topic_for_queue(queue: str) -> str:
    """The MQTT Response Topic that reaches the AMQP queue ``queue``."""
    if "%" in queue:
        queue = queue.replace("%", "%25")
    if "/" in queue:
        queue = queue.replace("/", "%2F")
    if "+" in queue:
        queue = queue.replace("+", "%2B")
    if "#" in queue:
        queue = queue.replace("#", "%23")
    return REPLY_TOPIC_PREFIX + queue


def queue_for_reply_topic(topic: str) -> str | None:
    """The AMQP queue a publish to ``topic`` answers, or None when it is not a reply topic."""
    if not topic.startswith(REPLY_TOPIC_PREFIX):
        return None
    queue = topic[len(REPLY_TOPIC_PREFIX) :]
    if not queue or "/" in queue:
        return None
    if "%" in queue:
        # %25 last so an escaped "%2F" in the name ("%252F") comes back as "%2F".
        queue = queue.replace("%2F", "/").replace("%2B", "+").replace("%23", "#")
        queue = queue.replace("%25", "%")
    return queue
