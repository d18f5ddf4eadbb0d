"""Confirms wait for the commit that holds them: AMQP publisher confirms (in order, with correct
`multiple` semantics when deferred and immediate ones mix) and MQTT PUBACK/PUBREC order."""

from __future__ import annotations

from typing import Any

from pamqp import commands

from gateway.core.broker import Broker
from gateway.mqtt.packets import PubAck, PubRec
from gateway.store import RecordLog, StoreObserver
from tests.unit.amqp_adapter.helpers import Client, connected, declare, make_context
from tests.unit.mqtt_adapter.harness import World

PERSISTENT = commands.Basic.Properties(delivery_mode=2)


def attach(broker: Broker) -> StoreObserver:
    observer = StoreObserver(RecordLog(), {}, 1)
    broker.observers.append(observer)
    broker.commit_barrier = observer
    return observer


def commit(observer: StoreObserver) -> None:
    observer.committed_upto(observer.written)


def confirmed(client: Client) -> list[tuple[str, int, bool]]:
    return [
        (m.name, m.delivery_tag, m.multiple)
        for m in client.methods()
        if isinstance(m, commands.Basic.Ack | commands.Basic.Nack)
    ]


def amqp_setup(**queue_args: Any) -> tuple[Client, StoreObserver]:
    context = make_context()
    observer = attach(context.broker)
    client = connected(context)
    declare(client, "durable", durable=True, arguments=queue_args or None)
    declare(client, "transient")
    client.call(1, commands.Confirm.Select())
    client.one(commands.Confirm.SelectOk)
    return client, observer


def test_persistent_publish_to_a_durable_queue_is_confirmed_after_the_commit() -> None:
    client, observer = amqp_setup()
    client.publish(1, b"p", routing_key="durable", properties=PERSISTENT)
    assert confirmed(client) == []
    commit(observer)
    assert confirmed(client) == [("Basic.Ack", 1, False)]


def test_transient_traffic_is_confirmed_at_once() -> None:
    client, observer = amqp_setup()
    client.publish(1, b"t", routing_key="durable")  # transient message
    client.publish(1, b"p", routing_key="transient", properties=PERSISTENT)  # transient queue
    assert confirmed(client) == [("Basic.Ack", 1, False), ("Basic.Ack", 2, False)]
    assert observer.written == 1  # the durable queue's declaration only


def test_mixed_confirms_stay_in_order() -> None:
    client, observer = amqp_setup()
    client.publish(1, b"t1", routing_key="transient")
    assert confirmed(client) == [("Basic.Ack", 1, False)]
    client.publish(1, b"p2", routing_key="durable", properties=PERSISTENT)
    first_commit = observer.written
    client.publish(1, b"t3", routing_key="transient")  # behind p2: waits with it
    client.publish(1, b"p4", routing_key="durable", properties=PERSISTENT)
    client.publish(1, b"t5", routing_key="transient")
    assert confirmed(client) == []
    observer.committed_upto(first_commit)  # p2's record only
    assert confirmed(client) == [("Basic.Ack", 3, True)]
    commit(observer)
    assert confirmed(client) == [("Basic.Ack", 5, True)]


def test_a_nack_behind_a_deferred_ack_keeps_its_place() -> None:
    client, observer = amqp_setup(**{"x-max-length": 1, "x-overflow": "reject-publish"})
    client.publish(1, b"p1", routing_key="durable", properties=PERSISTENT)
    client.publish(1, b"p2", routing_key="durable", properties=PERSISTENT)  # queue full
    assert confirmed(client) == []
    commit(observer)
    assert confirmed(client) == [("Basic.Ack", 1, False), ("Basic.Nack", 2, False)]


def test_a_closed_channel_gets_no_late_confirms() -> None:
    client, observer = amqp_setup()
    client.publish(1, b"p", routing_key="durable", properties=PERSISTENT)
    client.call(1, commands.Channel.Close(200, "bye", 0, 0))
    assert [m.name for m in client.methods()] == ["Channel.CloseOk"]
    commit(observer)
    assert client.methods() == []


def test_mqtt_puback_and_pubrec_follow_the_commit_in_publish_order() -> None:
    world = World()
    observer = attach(world.broker)
    world.hub.vhost.declare_queue("dq", durable=True)
    world.hub.vhost.bind_queue("dq", "amq.topic", "d.*")
    client = world.client()
    client.connect("pub")
    client.publish("d/1", b"a", 1, packet_id=1)  # to the durable queue: waits
    client.publish("other", b"b", 1, packet_id=2)  # no durable target, but after packet 1
    client.publish("d/2", b"c", 2, packet_id=3)
    assert client.received() == []
    commit(observer)
    acks = client.received()
    assert [(type(p), p.packet_id) for p in acks if isinstance(p, PubAck | PubRec)] == [
        (PubAck, 1),
        (PubAck, 2),
        (PubRec, 3),
    ]
    assert len(acks) == 3
    client.publish("other", b"d", 1, packet_id=4)  # nothing held: at once
    assert client.expect(PubAck).packet_id == 4


def test_tx_commit_ok_follows_the_store_commit_when_the_transaction_wrote() -> None:
    context = make_context()
    observer = attach(context.broker)
    client = connected(context)
    declare(client, "durable", durable=True)
    declare(client, "transient")
    client.call(1, commands.Tx.Select())
    client.one(commands.Tx.SelectOk)
    client.publish(1, b"t", routing_key="transient", properties=PERSISTENT)
    client.call(1, commands.Tx.Commit())
    client.one(commands.Tx.CommitOk)  # nothing stored: at once
    client.publish(1, b"p", routing_key="durable", properties=PERSISTENT)
    client.call(1, commands.Tx.Commit())
    assert client.methods() == []
    commit(observer)
    client.one(commands.Tx.CommitOk)
