"""The fast batch (session_delivery_fast.py) appends PUBLISHes to the connection's output list
itself (`MqttConnection.publish_buffer`); a connection closed by a call out of the batch (here
the output hook) must stop that, as `send_encoded` would: the rest of the batch is dropped as
undeliverable, exactly as on the general path."""

from __future__ import annotations

import pytest

from gateway.mqtt.packets import MQTT_3_1_1, MQTT_5, PubAck
from gateway.mqtt.session_handler import ClientHandler

from .harness import World


def _run(monkeypatch: pytest.MonkeyPatch, version: int, fast: bool) -> tuple[object, ...]:
    world = World(max_inflight=3)
    sub = world.client(version)
    sub.connect("closing")
    sub.subscribe("cl/#", 1)
    pub = world.client(version)
    pub.connect("clpub")
    for n in range(6):
        pub.publish("cl/t", b"m%d" % n, 1, packet_id=n + 1)
    first = sub.publishes()
    assert [p.payload for p in first] == [b"m0", b"m1", b"m2"]
    session = world.hub.sessions["closing"]
    if not fast:
        assert session.core is not None
        session.core.deliver_many = session.deliver_each
    handler = session.handler
    queue = world.hub.vhost.queue(session.queue_name)
    on_output = ClientHandler.on_output

    def closing(self: ClientHandler) -> None:
        on_output(self)
        if self is handler:
            self.conn.close()  # the first PUBLISH of the refill told, then the link is gone

    monkeypatch.setattr(ClientHandler, "on_output", closing)
    sub.send(*(PubAck(p.packet_id) for p in first if p.packet_id is not None))
    monkeypatch.undo()
    return (
        [o.payload for o in session.inflight.values()],
        session.dropped_deliveries,
        [e.message.body for e in queue.ready_entries()],
        world.hub.stats["delivered"],
    )


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_a_connection_closed_mid_batch_gets_nothing_more_on_either_path(
    monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    general = _run(monkeypatch, version, fast=False)
    fast = _run(monkeypatch, version, fast=True)
    assert fast == general
    inflight, dropped, ready, delivered = fast
    assert delivered == 4  # m0-m2, then m3, sent before the close
    assert (dropped, ready) == (2, [])  # m4 and m5: not sent, discarded as undeliverable
    assert inflight == []  # the clean session ended with its connection
