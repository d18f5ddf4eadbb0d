"""A clean restart on the same data directory keeps what the store holds: topology, queued
persistent messages, and retained MQTT messages (with what is left of their expiry)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pika
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.codec import PacketDecoder, encode
from gateway.mqtt.packets import MQTT_5, ConnAck, Connect, Will
from gateway.mqtt.packets import Properties as Properties5
from tests.gateway_runner import RunningGateway, make_config


def start(data_dir: Path) -> RunningGateway:
    return RunningGateway(make_config(data_dir=str(data_dir))).start()


def paho(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_retained_messages_survive_a_restart(tmp_path: Path) -> None:
    gateway = start(tmp_path)
    try:
        publisher = paho(gateway.mqtt_port, "retain-pub")
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = 3600
        props.UserProperty = [("unit", "C")]
        publisher.publish("restart/temp", b"21.5", qos=1, retain=True, properties=props
                          ).wait_for_publish(10)  # fmt: skip
        publisher.publish("restart/gone", b"x", qos=1, retain=True).wait_for_publish(10)
        publisher.publish("restart/gone", b"", qos=1, retain=True).wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
    finally:
        gateway.stop()
    gateway = start(tmp_path)
    try:
        got: list[mqtt.MQTTMessage] = []
        done = threading.Event()

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            got.append(message)
            done.set()

        subscriber = paho(gateway.mqtt_port, "retain-sub")
        subscriber.on_message = on_message
        subscriber.subscribe("restart/#", qos=1)
        assert done.wait(10)
        subscriber.loop_stop()
        subscriber.disconnect()
    finally:
        gateway.stop()
    assert [(m.topic, m.payload, m.retain) for m in got] == [("restart/temp", b"21.5", True)]
    received = got[0].properties
    assert received is not None
    assert received.UserProperty == [("unit", "C")]  # type: ignore[attr-defined]
    assert 3500 < received.MessageExpiryInterval <= 3600  # type: ignore[attr-defined]


def test_queued_messages_and_topology_survive_a_restart(tmp_path: Path) -> None:
    gateway = start(tmp_path)
    try:
        params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port)
        with pika.BlockingConnection(params) as connection:
            ch = connection.channel()
            ch.confirm_delivery()
            ch.queue_declare("restart-q", durable=True)
            ch.queue_bind("restart-q", "amq.topic", "restart.data")
            for i in range(3):
                props = pika.BasicProperties(delivery_mode=2, headers={"i": i})
                ch.basic_publish("amq.topic", "restart.data", b"m%d" % i, props)
        mqtt_pub = paho(gateway.mqtt_port, "restart-mqtt")
        mqtt_pub.publish("restart/data", b"from-mqtt", qos=1).wait_for_publish(10)
        mqtt_pub.loop_stop()
        mqtt_pub.disconnect()
    finally:
        gateway.stop()
    gateway = start(tmp_path)
    try:
        params = pika.ConnectionParameters("127.0.0.1", gateway.amqp_port)
        with pika.BlockingConnection(params) as connection:
            ch = connection.channel()
            got = []
            while True:
                method, props, body = ch.basic_get("restart-q", auto_ack=True)
                if method is None:
                    break
                got.append((body, props.headers.get("i") if props.headers else None))
            ch.basic_publish("amq.topic", "restart.data", b"routed")  # the binding is back
            method, _props, body = ch.basic_get("restart-q", auto_ack=True)
            assert body == b"routed"
    finally:
        gateway.stop()
    assert got[:3] == [(b"m0", 0), (b"m1", 1), (b"m2", 2)]
    assert got[3][0] == b"from-mqtt"
    assert len(got) == 4


def test_persistent_mqtt_session_survives_a_restart(tmp_path: Path) -> None:
    def connect(
        port: int,
    ) -> tuple[mqtt.Client, list[mqtt.MQTTMessage], threading.Event, list[bool]]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="restart-dev",
                             protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
        got: list[mqtt.MQTTMessage] = []
        present: list[bool] = []
        arrived = threading.Event()
        connected = threading.Event()

        def on_connect(_c: object, _u: object, flags: object, _rc: object, _p: object) -> None:
            present.append(bool(getattr(flags, "session_present", False)))
            connected.set()

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            got.append(message)
            arrived.set()

        client.on_connect = on_connect
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()
        assert connected.wait(10)
        return client, got, arrived, present

    gateway = start(tmp_path)
    try:
        client, _, _, present = connect(gateway.mqtt_port)
        assert present == [False]
        sub_props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        sub_props.SubscriptionIdentifier = 42
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.subscribe("sess/+", qos=1, properties=sub_props)
        assert subscribed.wait(10)
        client.loop_stop()
        client.disconnect()
        publisher = paho(gateway.mqtt_port, "restart-sess-pub")
        publisher.publish("sess/a", b"while-away", qos=1).wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
    finally:
        gateway.stop()
    gateway = start(tmp_path)
    try:
        client, got, arrived, present = connect(gateway.mqtt_port)
        assert arrived.wait(10)
        client.loop_stop()
        client.disconnect()
    finally:
        gateway.stop()
    assert present == [True]
    assert [(m.topic, m.payload) for m in got] == [("sess/a", b"while-away")]
    assert got[0].properties is not None
    assert got[0].properties.SubscriptionIdentifier == [42]  # type: ignore[attr-defined]


def test_a_delayed_will_survives_a_restart(tmp_path: Path) -> None:
    will = Will("restart/will", b"gone", 1, False, Properties5(will_delay_interval=2))
    connect = Connect("restart-will", MQTT_5, clean_start=False, will=will,
                      properties=Properties5(session_expiry_interval=60))  # fmt: skip
    gateway = start(tmp_path)
    try:
        sock = socket.create_connection(("127.0.0.1", gateway.mqtt_port), timeout=5)
        sock.sendall(encode(connect, MQTT_5))
        [connack] = PacketDecoder(protocol_level=MQTT_5).feed(sock.recv(1024))
        assert isinstance(connack, ConnAck)
        sock.close()  # no DISCONNECT: the will is due after its 2 s delay
        assert gateway.call(lambda: gateway.gateway.mqtt.pending_will("restart-will")) == will
    finally:
        gateway.stop()
    gateway = start(tmp_path)
    try:
        got: list[mqtt.MQTTMessage] = []
        arrived = threading.Event()

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            got.append(message)
            arrived.set()

        subscribed = threading.Event()
        subscriber = paho(gateway.mqtt_port, "restart-will-sub")
        subscriber.on_message = on_message
        subscriber.on_subscribe = lambda *_args: subscribed.set()
        subscriber.subscribe("restart/will", qos=1)
        assert subscribed.wait(10)
        assert arrived.wait(10)
        subscriber.loop_stop()
        subscriber.disconnect()
    finally:
        gateway.stop()
    assert [(m.topic, m.payload) for m in got] == [("restart/will", b"gone")]
