# The gateway image; the demo's devices and backend (docker-compose.yml) run from it too.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README.md is the package's readme in pyproject.toml: the build needs it.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# The [demo] extra adds the backend's and devices' clients (aio-pika, paho-mqtt).
RUN pip install ".[demo]" \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home gateway \
    && mkdir -p /data \
    && chown gateway:gateway /data

USER gateway
VOLUME /data

# MQTT, MQTT over WebSocket (/ws), AMQP 0-9-1, HTTP (management API, /metrics, /healthz).
EXPOSE 1883 15675 5672 15672

# No curl in the slim image: the interpreter does the request.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:15672/healthz', timeout=2)"]

CMD ["gateway", "run", "--data-dir", "/data"]
