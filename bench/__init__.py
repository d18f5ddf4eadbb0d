"""Performance harness: the gateway and the reference brokers under the same raw-socket load."""
