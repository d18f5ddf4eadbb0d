"""Exchange declaration and routing tables for every exchange type."""

from __future__ import annotations

import pytest

from gateway.core.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
)
from gateway.core.exchanges import HeadersExchange

from .helpers import make_broker, msg, publish


def test_predeclared_exchanges() -> None:
    _, vhost, _ = make_broker()
    types = {x.name: x.type_name for x in vhost.exchanges()}
    assert types == {
        "": "direct",
        "amq.direct": "direct",
        "amq.fanout": "fanout",
        "amq.topic": "topic",
        "amq.headers": "headers",
        "amq.match": "headers",
    }
    assert all(x.durable for x in vhost.exchanges())


def test_default_exchange_routes_by_queue_name() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("orders")
    assert publish(vhost, "", "orders") == ["orders"]
    assert publish(vhost, "", "nothing") == []
    result = vhost.publish("", msg(routing_key="nothing"))
    assert not result.routed
    assert result.queues == []
    assert result.rejected == []


@pytest.mark.parametrize(
    "operation",
    [
        lambda v: v.bind_queue("q", "", "q"),
        lambda v: v.unbind_queue("q", "", "q"),
        lambda v: v.bind_exchange("amq.direct", "", "k"),
        lambda v: v.bind_exchange("", "amq.direct", "k"),
        lambda v: v.delete_exchange(""),
        lambda v: v.declare_exchange("", "direct"),
        lambda v: v.declare_exchange("", "direct", passive=True),
    ],
)
def test_default_exchange_is_untouchable(operation: object) -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    with pytest.raises(AccessRefused) as info:
        operation(vhost)  # type: ignore[operator]
    assert info.value.code == 403
    assert info.value.text == "ACCESS_REFUSED - operation not permitted on the default exchange"


def test_direct_routing_table() -> None:
    _, vhost, _ = make_broker()
    for q in ("q1", "q2", "q3"):
        vhost.declare_queue(q)
    vhost.bind_queue("q1", "amq.direct", "red")
    vhost.bind_queue("q2", "amq.direct", "red")
    vhost.bind_queue("q2", "amq.direct", "green")
    vhost.bind_queue("q3", "amq.direct", "")
    assert publish(vhost, "amq.direct", "red") == ["q1", "q2"]
    assert publish(vhost, "amq.direct", "green") == ["q2"]
    assert publish(vhost, "amq.direct", "") == ["q3"]
    assert publish(vhost, "amq.direct", "blue") == []
    vhost.unbind_queue("q1", "amq.direct", "red")
    assert publish(vhost, "amq.direct", "red") == ["q2"]


def test_same_binding_twice_is_idempotent_and_args_make_another() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.direct", "k")
    vhost.bind_queue("q", "amq.direct", "k")
    assert len(vhost.exchange("amq.direct").bindings) == 1
    vhost.bind_queue("q", "amq.direct", "k", {"tag": 1})
    assert len(vhost.exchange("amq.direct").bindings) == 2
    assert publish(vhost, "amq.direct", "k") == ["q"]  # still one copy
    vhost.unbind_queue("q", "amq.direct", "k")
    assert publish(vhost, "amq.direct", "k") == ["q"]  # the other binding holds
    vhost.unbind_queue("q", "amq.direct", "k", {"tag": 1})
    assert publish(vhost, "amq.direct", "k") == []
    vhost.unbind_queue("q", "amq.direct", "k")  # not bound: succeeds quietly


def test_fanout_routing_table() -> None:
    _, vhost, _ = make_broker()
    for q in ("a", "b"):
        vhost.declare_queue(q)
        vhost.bind_queue(q, "amq.fanout", "ignored")
    assert publish(vhost, "amq.fanout", "anything") == ["a", "b"]
    vhost.unbind_queue("a", "amq.fanout", "ignored")
    assert publish(vhost, "amq.fanout", "") == ["b"]


def test_topic_routing_table() -> None:
    _, vhost, _ = make_broker()
    table = {"t1": "plant.*.temp", "t2": "plant.#", "t3": "#.temp", "t4": "plant.7.temp"}
    for q, pattern in table.items():
        vhost.declare_queue(q)
        vhost.bind_queue(q, "amq.topic", pattern)
    assert sorted(publish(vhost, "amq.topic", "plant.7.temp")) == ["t1", "t2", "t3", "t4"]
    assert sorted(publish(vhost, "amq.topic", "plant.8.temp")) == ["t1", "t2", "t3"]
    assert sorted(publish(vhost, "amq.topic", "plant")) == ["t2"]
    assert sorted(publish(vhost, "amq.topic", "temp")) == ["t3"]
    assert publish(vhost, "amq.topic", "other") == []


@pytest.mark.parametrize(
    ("binding", "headers", "expected"),
    [
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
        ({"x-match": "all", "a": 1}, {"a": 2}, False),
        ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x"}, True),
        ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "y"}, False),
        ({"a": 1}, {"a": 1}, True),  # all is the default
        ({"x-match": "all"}, {}, True),  # an empty pattern matches everything with all
        ({"x-match": "any"}, {"a": 1}, False),  # and nothing with any
        ({"x-match": "all", "a": None}, {"a": "whatever"}, True),  # void: presence only
        ({"x-match": "all", "a": None}, {}, False),
        ({"x-match": "all", "a": True}, {"a": 1}, False),  # bool is not int
        ({"x-match": "all", "x-id": 5}, {"x-id": 6}, True),  # x- keys ignored by all
        ({"x-match": "all-with-x", "x-id": 5}, {"x-id": 6}, False),
        ({"x-match": "all-with-x", "x-id": 5}, {"x-id": 5}, True),
        ({"x-match": "any", "x-id": 5}, {"x-id": 5}, False),
        ({"x-match": "any-with-x", "x-id": 5}, {"x-id": 5}, True),
        ({"x-match": "any-with-x", "x-id": 5, "k": 1}, {"k": 1}, True),
    ],
)
def test_headers_matching(
    binding: dict[str, object], headers: dict[str, object], expected: bool
) -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.headers", "", binding)
    assert (publish(vhost, "amq.headers", "rk", headers=headers) == ["q"]) is expected


def test_headers_without_headers_property() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    vhost.bind_queue("q", "amq.match", "", {"x-match": "any", "a": 1})
    assert publish(vhost, "amq.match", "") == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            "some",
            'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; '
            "expected all, any, all-with-x, or any-with-x",
        ),
        (
            7,
            "PRECONDITION_FAILED - Invalid x-match field type long (value 7); expected longstr",
        ),
    ],
)
def test_headers_binding_validation(value: object, text: str) -> None:
    _, vhost, _ = make_broker()
    vhost.declare_queue("q")
    with pytest.raises(PreconditionFailed) as info:
        vhost.bind_queue("q", "amq.headers", "", {"x-match": value})
    assert info.value.text == text
    assert isinstance(vhost.exchange("amq.headers"), HeadersExchange)
    assert not vhost.exchange("amq.headers").bindings


def test_exchange_to_exchange_bindings_are_transitive_without_duplicates() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("x1", "topic")
    vhost.declare_exchange("x2", "fanout")
    vhost.declare_exchange("x3", "direct")
    vhost.declare_queue("q1")
    vhost.declare_queue("q2")
    vhost.bind_exchange("x2", "x1", "a.#")
    vhost.bind_exchange("x3", "x2", "")
    vhost.bind_exchange("x1", "x3", "a.b")  # a loop back to the start
    vhost.bind_queue("q1", "x2", "")
    vhost.bind_queue("q2", "x3", "a.b")
    vhost.bind_queue("q1", "x1", "#")  # q1 reachable twice
    assert sorted(publish(vhost, "x1", "a.b")) == ["q1", "q2"]
    assert sorted(publish(vhost, "x1", "a.c")) == ["q1"]
    assert sorted(publish(vhost, "x1", "z")) == ["q1"]
    vhost.unbind_exchange("x2", "x1", "a.#")
    assert sorted(publish(vhost, "x1", "a.b")) == ["q1"]


def test_bind_exchange_errors() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(NotFound) as info:
        vhost.bind_exchange("nope", "amq.direct", "k")
    assert info.value.text == "NOT_FOUND - no exchange 'nope' in vhost '/'"
    with pytest.raises(NotFound):
        vhost.bind_exchange("amq.direct", "nope", "k")
    with pytest.raises(NotFound) as info:
        vhost.bind_queue("nope", "amq.direct", "k")
    assert info.value.text == "NOT_FOUND - no queue 'nope' in vhost '/'"
    with pytest.raises(NotFound):
        vhost.unbind_queue("nope", "amq.direct", "k")


def test_alternate_exchange() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("ae", "fanout")
    vhost.declare_exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    vhost.declare_queue("routed")
    vhost.declare_queue("unrouted")
    vhost.bind_queue("routed", "main", "good")
    vhost.bind_queue("unrouted", "ae", "")
    assert publish(vhost, "main", "good") == ["routed"]
    assert publish(vhost, "main", "bad") == ["unrouted"]
    result = vhost.publish("main", msg(routing_key="bad"))
    assert result.routed


def test_alternate_exchange_missing_or_looping() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("a", "direct", arguments={"alternate-exchange": "b"})
    vhost.declare_exchange("b", "direct", arguments={"alternate-exchange": "a"})
    vhost.declare_exchange("c", "direct", arguments={"alternate-exchange": "missing"})
    assert publish(vhost, "a", "k") == []
    assert publish(vhost, "c", "k") == []


def test_alternate_exchange_argument_type() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(PreconditionFailed) as info:
        vhost.declare_exchange("x", "direct", arguments={"alternate-exchange": 5})
    assert info.value.text == (
        "PRECONDITION_FAILED - invalid type 'long' for arg 'alternate-exchange' "
        "in exchange 'x' in vhost '/'"
    )


def test_internal_exchange_refuses_publishes_but_routes_bindings() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("inner", "fanout", internal=True)
    vhost.declare_exchange("outer", "fanout")
    vhost.declare_queue("q")
    vhost.bind_queue("q", "inner", "")
    vhost.bind_exchange("inner", "outer", "")
    with pytest.raises(AccessRefused) as info:
        publish(vhost, "inner", "k")
    assert info.value.text == (
        "ACCESS_REFUSED - cannot publish to internal exchange 'inner' in vhost '/'"
    )
    assert publish(vhost, "outer", "k") == ["q"]


def test_publish_to_missing_exchange() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(NotFound) as info:
        publish(vhost, "ghost", "k")
    assert info.value.code == 404
    assert not info.value.hard


def test_auto_delete_exchange_goes_with_its_last_binding() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("auto", "direct", auto_delete=True)
    vhost.declare_queue("q1")
    vhost.declare_queue("q2")
    vhost.bind_queue("q1", "auto", "k")
    vhost.bind_queue("q2", "auto", "k")
    vhost.unbind_queue("q1", "auto", "k")
    assert vhost.exchange("auto")
    vhost.delete_queue("q2")  # deleting the queue drops the last binding
    with pytest.raises(NotFound):
        vhost.exchange("auto")


def test_auto_delete_exchange_never_bound_stays() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("auto", "direct", auto_delete=True)
    assert vhost.exchange("auto").auto_delete


def test_auto_delete_cascades_through_exchange_bindings() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("up", "fanout", auto_delete=True)
    vhost.declare_exchange("down", "fanout")
    vhost.bind_exchange("down", "up", "")
    vhost.delete_exchange("down")
    with pytest.raises(NotFound):
        vhost.exchange("up")


def test_declare_unknown_type_is_a_hard_error() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(CommandInvalid) as info:
        vhost.declare_exchange("x", "x-delayed")
    assert info.value.code == 503
    assert info.value.hard
    assert info.value.text == "COMMAND_INVALID - unknown exchange type 'x-delayed'"


def test_reserved_amq_prefix() -> None:
    _, vhost, _ = make_broker()
    with pytest.raises(AccessRefused) as info:
        vhost.declare_exchange("amq.x", "direct")
    assert (
        info.value.text == "ACCESS_REFUSED - exchange name 'amq.x' contains reserved prefix 'amq.*'"
    )
    # Redeclaring an existing amq.* exchange equivalently is fine, passive too.
    assert vhost.declare_exchange("amq.topic", "topic", durable=True).name == "amq.topic"
    assert vhost.declare_exchange("amq.topic", "", passive=True).name == "amq.topic"
    with pytest.raises(PreconditionFailed):
        vhost.declare_exchange("amq.topic", "topic", durable=False)
    with pytest.raises(AccessRefused) as info:
        vhost.delete_exchange("amq.direct")
    assert info.value.text == (
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    )


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"type": "fanout"},
            "inequivalent arg 'type' for exchange 'x' in vhost '/': "
            "received 'fanout' but current is 'direct'",
        ),
        (
            {"type": "direct", "durable": True},
            "inequivalent arg 'durable' for exchange 'x' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"type": "direct", "auto_delete": True},
            "inequivalent arg 'auto_delete' for exchange 'x' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"type": "direct", "internal": True},
            "inequivalent arg 'internal' for exchange 'x' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"type": "direct", "arguments": {"alternate-exchange": "ae"}},
            "inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': "
            "received the value 'ae' of type 'longstr' but current is none",
        ),
    ],
)
def test_inequivalent_redeclare(kwargs: dict[str, object], text: str) -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("x", "direct")
    with pytest.raises(PreconditionFailed) as info:
        vhost.declare_exchange("x", **kwargs)  # type: ignore[arg-type]
    assert info.value.code == 406
    assert info.value.text == "PRECONDITION_FAILED - " + text


def test_equivalent_redeclare_and_passive() -> None:
    _, vhost, _ = make_broker()
    first = vhost.declare_exchange("x", "topic", durable=True, arguments={"other": 1})
    # Arguments exchanges do not act on are not compared (as RabbitMQ).
    assert vhost.declare_exchange("x", "topic", durable=True) is first
    assert vhost.declare_exchange("x", "ignored", passive=True) is first
    with pytest.raises(NotFound) as info:
        vhost.declare_exchange("y", "topic", passive=True)
    assert info.value.text == "NOT_FOUND - no exchange 'y' in vhost '/'"


def test_delete_exchange() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("x", "direct")
    vhost.declare_queue("q")
    vhost.bind_queue("q", "x", "k")
    with pytest.raises(PreconditionFailed) as info:
        vhost.delete_exchange("x", if_unused=True)
    assert info.value.text == "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use"
    vhost.delete_exchange("x")
    vhost.delete_exchange("x")  # gone already: fine
    assert not vhost.queue("q")._sources
    with pytest.raises(NotFound):
        publish(vhost, "x", "k")


def test_deleting_a_destination_exchange_removes_its_incoming_bindings() -> None:
    _, vhost, _ = make_broker()
    vhost.declare_exchange("src", "fanout")
    vhost.declare_exchange("dst", "fanout")
    vhost.bind_exchange("dst", "src", "")
    vhost.delete_exchange("dst")
    assert not vhost.exchange("src").bindings
    assert publish(vhost, "src", "") == []
