"""Blocking wrappers around independent MQTT clients for the interop tests.

`Paho` runs paho-mqtt (CallbackAPIVersion.VERSION2) on its own network thread that calls
`loop()` with a short timeout, so stopping it never waits for paho's one-second select, and it
never reconnects on its own: a test decides what happens after a disconnect. Every answer a
test waits for (CONNACK, SUBACK, PUBACK/PUBCOMP, messages, DISCONNECT) arrives through a queue
or a condition with a timeout; nothing sleeps except `assert_silent`, which proves that nothing
arrives (kept well under half a second).
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
TIMEOUT = 5.0
SILENCE = 0.3  # how long "nothing arrives" is watched for
JS_DIR = Path(__file__).parent / "js"

V311 = MQTTProtocolVersion.MQTTv311
V5 = MQTTProtocolVersion.MQTTv5
Transport = Literal["tcp", "websockets"]

__all__ = [
    "HOST",
    "JS_DIR",
    "TIMEOUT",
    "V5",
    "V311",
    "ConnAckInfo",
    "Paho",
    "SubscribeOptions",
    "close_clients",
    "collect",
    "props",
    "run_node",
    "uid",
    "wait_until",
]


def uid(prefix: str) -> str:
    """A client id or topic prefix no other test uses (the gateway is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def props(packet: int = PacketTypes.PUBLISH, **values: Any) -> Properties:
    """paho Properties, e.g. props(PacketTypes.CONNECT, SessionExpiryInterval=5)."""
    built = Properties(packet)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(built, name, value)
    return built


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.02) -> None:
    """Poll a condition the gateway exposes no event for (e.g. a timer fired on its loop)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        time.sleep(step)


_OPEN: list[Paho] = []  # every client a test made, closed after it whatever happened


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Autouse in every module that imports it: no client outlives its test."""
    yield
    while _OPEN:
        _OPEN.pop().close()


@dataclass(frozen=True)
class ConnAckInfo:
    session_present: bool
    reason_code: int
    reason_name: str
    properties: Properties | None


@dataclass(frozen=True)
class DisconnectInfo:
    reason_code: int
    properties: Properties | None


class Paho:
    """One paho-mqtt client connected to the gateway (TCP or WebSocket at /ws)."""

    def __init__(
        self,
        port: int,
        client_id: str | None = None,
        *,
        version: MQTTProtocolVersion = V5,
        transport: Transport = "tcp",
        clean: bool = True,
        properties: Properties | None = None,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool, Properties | None] | None = None,
        keepalive: int = 60,
        connect: bool = True,
    ) -> None:
        self.port = port
        self.version = version
        self.client_id = client_id if client_id is not None else uid("paho")
        kwargs: dict[str, Any] = {}
        if version != V5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=version,
            transport=transport,
            **kwargs,
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/ws")
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain, will_props = will
            self.client.will_set(topic, payload, qos, retain, will_props)
        self._clean = clean
        self._connect_props = properties
        self._keepalive = keepalive
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[ConnAckInfo] = queue.Queue()
        self.disconnects: queue.Queue[DisconnectInfo] = queue.Queue()
        self._acks: dict[int, tuple[int, Properties | None]] = {}
        self._subacks: dict[int, list[int]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_disconnect = self._on_disconnect
        self.connack: ConnAckInfo | None = None
        _OPEN.append(self)
        if connect:
            ack = self.connect()
            assert ack.reason_code == 0, ack

    # -- callbacks (paho's network thread) ---------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any) -> None:
        self.connacks.put(ConnAckInfo(bool(flags.session_present), rc.value, str(rc), properties))

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, properties: Any) -> None:
        with self._cond:
            self._acks[mid] = (rc.value, properties)
            self._cond.notify_all()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any
    ) -> None:
        with self._cond:
            self._subacks[mid] = [code.value for code in codes]
            self._cond.notify_all()

    def _on_unsubscribe(
        self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any
    ) -> None:
        with self._cond:
            self._subacks[mid] = [code.value for code in codes]
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnects.put(DisconnectInfo(rc.value, props))

    # -- the network thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.client.loop(timeout=0.02) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # connection gone; never reconnect behind the test's back

    def _stop_thread(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(TIMEOUT)
        self._thread = None

    # -- actions -----------------------------------------------------------------------------

    def connect(
        self, *, clean: bool | None = None, properties: Properties | None = None
    ) -> ConnAckInfo:
        """Connect (again) and wait for CONNACK; a refused one is returned, not raised."""
        self._stop_thread()
        self._stop.clear()
        kwargs: dict[str, Any] = {}
        if self.version == V5:
            kwargs["clean_start"] = self._clean if clean is None else clean
            kwargs["properties"] = properties if properties is not None else self._connect_props
        self.client.connect(HOST, self.port, keepalive=self._keepalive, **kwargs)
        self._thread = threading.Thread(
            target=self._run, name=f"paho-{self.client_id}", daemon=True
        )
        self._thread.start()
        self.connack = self.connacks.get(timeout=TIMEOUT)
        return self.connack

    def subscribe(
        self,
        topic: str | list[tuple[str, Any]],
        qos: int | SubscribeOptions = 0,
        properties: Properties | None = None,
    ) -> list[int]:
        """Subscribe and return the SUBACK reason codes (granted QoS, or >= 0x80)."""
        if isinstance(topic, str):
            if self.version == V5:
                options = SubscribeOptions(qos=qos) if isinstance(qos, int) else qos
                result, mid = self.client.subscribe((topic, options), properties=properties)
            else:
                result, mid = self.client.subscribe(topic, cast(int, qos))
        else:
            result, mid = self.client.subscribe(topic, properties=properties)
        assert result == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert mid is not None
        return cast(list[int], self._wait_mid(self._subacks, mid))

    def unsubscribe(self, topic: str) -> list[int]:
        result, mid = self.client.unsubscribe(topic)
        assert result == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert mid is not None
        return cast(list[int], self._wait_mid(self._subacks, mid))

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish; for QoS 1/2 wait for PUBACK/PUBCOMP and return its reason code."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, info.rc
        if qos == 0:
            info.wait_for_publish(TIMEOUT)
            return 0
        return cast(int, self._wait_mid(self._acks, info.mid)[0])

    def publish_with_ack(
        self, topic: str, payload: bytes | str, qos: int, properties: Properties | None = None
    ) -> tuple[int, Properties | None]:
        """Like `publish` but also return the ack's properties (Reason String, ...)."""
        info = self.client.publish(topic, payload, qos, False, properties)
        return cast(tuple[int, Properties | None], self._wait_mid(self._acks, info.mid))

    def _wait_mid(self, table: dict[int, Any], mid: int) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: mid in table, TIMEOUT):
                raise AssertionError(f"no acknowledgement for message id {mid}")
            return table.pop(mid)

    def next(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def take(self, count: int, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        return [
            self.messages.get(timeout=max(0.01, deadline - time.monotonic())) for _ in range(count)
        ]

    def assert_silent(self, window: float = SILENCE) -> None:
        """Prove that no (further) message arrives."""
        try:
            extra = self.messages.get(timeout=window)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {extra.topic!r}: {extra.payload!r}")

    def next_disconnect(self, timeout: float = TIMEOUT) -> DisconnectInfo:
        return self.disconnects.get(timeout=timeout)

    def disconnect(self, reason: int | None = None, properties: Properties | None = None) -> None:
        """A clean DISCONNECT (v5: with an optional reason code), then wait for the close."""
        if self._thread is None:
            return
        if reason is None:
            self.client.disconnect(properties=properties)
        else:
            code = ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
            self.client.disconnect(reasoncode=code, properties=properties)
        self.disconnects.get(timeout=TIMEOUT)
        self._stop_thread()

    def kill(self) -> None:
        """Break the connection without DISCONNECT (what a crashed device does)."""
        self._stop_thread()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    @property
    def running(self) -> bool:
        """The network thread still runs: the connection has not been closed under us."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Disconnect if still connected, stop the network thread, release the socket."""
        try:
            if self.running and self.client.is_connected():
                self.disconnect()
        except (queue.Empty, OSError):
            pass
        self._stop_thread()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def collect(clients: list[Paho], total: int, *, match: str = "") -> list[list[mqtt.MQTTMessage]]:
    """Messages (whose topic contains `match`) arriving at any of `clients`, until `total`."""
    got: list[list[mqtt.MQTTMessage]] = [[] for _ in clients]
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, got)) < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {sum(map(len, got))} of {total} messages arrived")
        for index, client in enumerate(clients):
            try:
                message = client.messages.get(timeout=0.01)
            except queue.Empty:
                continue
            if match in message.topic:
                got[index].append(message)
    return got


def run_node(script: str, *args: object, timeout: float = 30.0) -> Any:
    """Run tests/interop/js/<script> with node and parse the JSON it prints on stdout."""
    done = subprocess.run(
        ["node", str(JS_DIR / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=JS_DIR,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stderr}\n{done.stdout}")
    return json.loads(done.stdout)
