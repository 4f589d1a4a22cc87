"""QoS 1 publishes and their PUBACKs: no deadlock between a publishing thread and paho's network thread, and every
refusal reaches the callback of the publish it belongs to.

The deadlock: paho calls on_publish holding its outgoing-message mutex, which its publish() takes as well; our
PUBACK handler waited for the connection's lock, which publish() held across paho's publish(). A service publishing
states at a steady rate froze both threads within a few hundred messages (the update-agent hung before READY=1
under systemd: tests/system/test_systemd_boot.py).
"""
from __future__ import annotations

import threading
import time

from benchbus.connection import Connection
from benchbus.testing.broker import MosquittoProcess

PUBLISHES = 20_000
DEADLINE_S = 120.0  # a hang shows as this wait expiring; a healthy run takes about a second


def publish_from_a_thread(connection: Connection, count: int, topic_of, on_refused_of) -> threading.Event:
    done = threading.Event()

    def pump() -> None:
        for i in range(count):
            connection.publish(topic_of(i), b"{}", kind="event", qos=1, on_refused=on_refused_of(i))
        done.set()

    threading.Thread(target=pump, name="publisher", daemon=True).start()
    return done


def test_a_steady_stream_of_qos1_publishes_never_deadlocks_with_the_pubacks(broker):
    connection = Connection("puback-stream", broker.settings())
    connection.start()
    try:
        connection.wait_connected(10)
        done = publish_from_a_thread(connection, PUBLISHES, lambda i: f"benchbus/t/probe/event/n{i % 50}",
                                     lambda _i: None)
        assert done.wait(DEADLINE_S), "the publishing thread hung (PUBACK handler and publish() deadlocked)"
    finally:
        connection.stop()


def test_each_refusal_reaches_its_own_publish(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic write benchbus/t/allowed/#\n")  # lines before any `user` apply to anonymous clients
    # started as root, Mosquitto reads the ACL after dropping to its own user unless told to stay (ignored otherwise)
    broker = MosquittoProcess(extra_conf=f"acl_file {acl}\nuser root\n")
    broker.start()
    refused: list[int] = []
    lock = threading.Lock()

    def on_refused_of(i: int):
        def note(_reason: str) -> None:
            with lock:
                refused.append(i)
        return note

    connection = Connection("puback-refusals", broker.settings())
    connection.start()
    try:
        connection.wait_connected(10)
        count = 2_000
        done = publish_from_a_thread(
            connection, count, lambda i: f"benchbus/t/{'denied' if i % 2 else 'allowed'}/event/x", on_refused_of)
        assert done.wait(DEADLINE_S), "the publishing thread hung"
        expected = list(range(1, count, 2))

        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:  # the last PUBACKs may still be on their way
            with lock:
                if len(refused) >= len(expected):
                    break
            time.sleep(0.05)
        with lock:
            assert sorted(refused) == expected
    finally:
        connection.stop()
        broker.close()
