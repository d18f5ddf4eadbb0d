"""Flow on the MQTT side: QoS 0 forwarded on the direct path (core/sinks.py) with headers
encoded once per message.

(Publishers are held through the shell's explicit ``pause_reading`` / ``resume_reading``
hooks, which the listeners hand to ``ClientHandler``: see ``ClientHandler._flow_hit``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.mqtt.packets import MQTT_5, Properties

if TYPE_CHECKING:
    from gateway.bridge.convert import MqttView
    from gateway.mqtt.session_handler import ClientHandler


def forward_qos0(
    handler: ClientHandler, view: MqttView, payload: bytes, retain: bool, properties: Properties
) -> bool:
    """Send a QoS 0 delivery of the direct path (``Session.deliver_direct``); False when the
    client cannot take it (too large for it, or gone).

    Where nothing about the PUBLISH is per-subscriber (no Subscription Identifier, so
    ``properties`` is the view's own, and no outbound Topic Alias), the header is the one the
    view caches per payload size, RETAIN and version: the bytes the publisher sent, with the
    QoS 0 flags, encoded once for a whole fan-out (DESIGN.md section 9).
    """
    conn = handler.conn
    v5 = handler.protocol_level == MQTT_5
    if conn.client_topic_alias_maximum or (v5 and properties is not view.properties):
        return handler.send_publish(view.topic, payload, 0, retain, False, None, properties)
    sent = conn.send_encoded(view.qos0_header(len(payload), retain, v5), payload)
    handler.on_output()
    if sent:
        handler.hub.stats["delivered"] += 1
    return sent
