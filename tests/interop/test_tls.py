"""mqtts and the TLS settings: a certificate in [tls] turns the TLS listeners on."""

from __future__ import annotations

import queue
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.gateway_runner import running_gateway

pytestmark = pytest.mark.interop


def test_mqtts_with_paho(tmp_path: Path) -> None:
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    with running_gateway(tls={"certfile": str(cert), "keyfile": str(key)}) as gw:
        assert {"mqtts", "amqps"} <= set(gw.ports)  # one TLS context serves both
        context = ssl.create_default_context()
        authority.configure_trust(context)
        received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-client",
                             protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
        client.tls_set_context(context)
        client.on_message = lambda _c, _u, msg: received.put(msg)
        subscribed: queue.Queue[object] = queue.Queue()
        client.on_subscribe = lambda *_args: subscribed.put(True)
        client.connect("127.0.0.1", gw.ports["mqtts"])
        client.loop_start()
        try:
            client.subscribe("secure/#", 1)
            subscribed.get(timeout=5)
            client.publish("secure/x", b"over tls", 1)
            msg = received.get(timeout=5)
            assert (msg.topic, msg.payload) == ("secure/x", b"over tls")
        finally:
            client.disconnect()
            client.loop_stop()


def test_no_certificate_means_no_tls_listeners() -> None:
    with running_gateway() as gw:
        assert "mqtts" not in gw.ports
        assert "amqps" not in gw.ports
