"""AMQP 0-9-1 and MQTT gateway: two protocols over one routing core."""

__version__ = "0.1.0"
