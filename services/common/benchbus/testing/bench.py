"""What every benchmark in bench/ shares: percentiles and the bare paho client that measures the floor."""
from __future__ import annotations

import socket

import paho.mqtt.client as mqtt

from .broker import Broker


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile; `fraction` 0.5 is the median, 0.99 the p99."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def bare_client(broker: Broker, name: str) -> mqtt.Client:
    """A plain paho MQTT 5 client with TCP_NODELAY, as the runtime sets it: the floor of a bus measurement."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    sock = client.socket()
    assert isinstance(sock, socket.socket), "connect() leaves paho with a TCP socket"
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    return client
