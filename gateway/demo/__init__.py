"""The demo stack of the README: simulated MQTT devices, an AMQP backend, and a runner that
starts them next to `gateway run --mappings mappings/demo` as plain processes.

Nothing in the gateway imports this package; it is a user of the gateway like any other client.
Every process prints one event per line (`events.format_event`), so people can read the output
and tests can parse it.
"""
