"""What every example shares: where the brokers are, a deadline, a clear exit status, and a
small adapter that lets paho-mqtt (which runs its network loop in a thread) be awaited next to
aio-pika in one asyncio program."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
MQTT_URL = os.environ.get("MQTT_URL", "mqtt://localhost:1883")
TIMEOUT = 10.0

T = TypeVar("T")


class ExampleFailed(Exception):
    """What went wrong, in words a reader of the example understands."""


class Expected(Generic[T]):
    """Collects what a consumer receives. `wait()` returns the items once `count` arrived and
    raises on a timeout or on `fail()` (e.g. a message that should not have been routed here)."""

    def __init__(self, count: int, what: str) -> None:
        self.count = count
        self.what = what
        self.items: list[T] = []
        self._arrived: asyncio.Future[list[T]] = asyncio.get_running_loop().create_future()

    def add(self, item: T) -> None:
        self.items.append(item)
        if len(self.items) == self.count and not self._arrived.done():
            self._arrived.set_result(self.items)

    def fail(self, reason: str) -> None:
        if not self._arrived.done():
            self._arrived.set_exception(ExampleFailed(f"{self.what}: {reason}"))

    async def wait(self) -> list[T]:
        try:
            return await asyncio.wait_for(asyncio.shield(self._arrived), TIMEOUT)
        except TimeoutError:
            raise ExampleFailed(
                f"timed out after {TIMEOUT:g} s waiting for {self.what} "
                f"({self.count} expected, got {len(self.items)}: {self.items})"
            ) from None


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the example: exit 0 when `main` returns, 1 with the reason when it fails or hangs."""
    try:
        asyncio.run(asyncio.wait_for(main(), 3 * TIMEOUT))
    except TimeoutError:
        print(f"FAILED: no result after {3 * TIMEOUT:g} s", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        print(f"FAILED: {exc or type(exc).__name__}", file=sys.stderr)
        sys.exit(1)


def publish_properties(**values: Any) -> Properties:
    """MQTT 5 PUBLISH properties by paho's names, e.g. ContentType="application/json"."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


class AsyncPaho:
    """A paho-mqtt client whose CONNACK, SUBACK and PUBACK can be awaited.

    paho calls its callbacks on its own network thread; each one is handed to the event loop
    with `call_soon_threadsafe`, so `on_message` and the futures only run on the loop.
    """

    def __init__(self, client_id: str, *, mqtt5: bool = True) -> None:
        self.loop = asyncio.get_running_loop()
        protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.client_id = client_id
        # Called on the event loop with each paho MQTTMessage.
        self.on_message: Callable[[paho.MQTTMessage], None] = lambda message: None
        self._connected: asyncio.Future[None] = self.loop.create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    @classmethod
    async def connect(cls, client_id: str, *, mqtt5: bool = True) -> AsyncPaho:
        self = cls(client_id, mqtt5=mqtt5)
        url = urlsplit(MQTT_URL)
        self.client.connect_async(url.hostname or "localhost", url.port or 1883)
        self.client.loop_start()
        await self._within(self._connected, f"{client_id}: CONNACK")
        return self

    async def subscribe(self, topic: str, qos: int) -> None:
        result, mid = self.client.subscribe(topic, qos)
        if mid is None:
            raise ExampleFailed(f"{self.client_id}: could not subscribe to {topic}: {result}")
        await self._within(self._ack(mid), f"{self.client_id}: SUBACK for {topic}")

    async def publish(
        self, topic: str, payload: str | bytes, qos: int, properties: Properties | None = None
    ) -> None:
        """Returns once the message is written (QoS 0) or acknowledged (QoS 1: PUBACK)."""
        info = self.client.publish(topic, payload, qos, properties=properties)
        await self._within(self._ack(info.mid), f"{self.client_id}: PUBACK for {topic}")

    async def disconnect(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    async def _within(self, future: asyncio.Future[None], what: str) -> None:
        try:
            await asyncio.wait_for(future, TIMEOUT)
        except TimeoutError:
            raise ExampleFailed(f"timed out after {TIMEOUT:g} s waiting for {what}") from None

    def _ack(self, mid: int) -> asyncio.Future[None]:
        # Registered before the loop runs the callback that settles it (see _settle).
        return self._acks.setdefault(mid, self.loop.create_future())

    def _settle(self, mid: int, reason: ReasonCode | None) -> None:
        future = self._ack(mid)
        if future.done():
            return
        if reason is not None and reason.is_failure:
            future.set_exception(ExampleFailed(f"{self.client_id}: refused with {reason}"))
        else:
            future.set_result(None)
        del self._acks[mid]

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        def settle() -> None:
            if self._connected.done():
                return
            if reason.is_failure:
                self._connected.set_exception(ExampleFailed(f"CONNACK {reason}"))
            else:
                self._connected.set_result(None)

        self.loop.call_soon_threadsafe(settle)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        self.loop.call_soon_threadsafe(self._settle, mid, reasons[0] if reasons else None)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        self.loop.call_soon_threadsafe(self._settle, mid, reason)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.loop.call_soon_threadsafe(self.on_message, message)
