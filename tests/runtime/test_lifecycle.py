"""Lifecycle against the real broker: restarts, kill -9, SIGTERM, stale last wills, systemd notifications."""
import signal
import socket
import threading
import time

import pytest

from benchbus import CallTimeout
from benchbus.demo import DemoService, DemoSettings


def lifecycle(bus, device, predicate, timeout=15):
    return bus.wait_for(f"benchbus/{device}/demo/$state", lambda _t, d: isinstance(d, dict) and predicate(d),
                        timeout)[1]


def test_broker_restart_restores_state_and_service(make_settings, serve, bus, broker, device):
    serve(DemoService, make_settings(DemoSettings))
    assert bus.call("demo", "increment")["value"] == 1
    broker.stop()
    with pytest.raises(CallTimeout):
        bus.call("demo", "echo", {"text": "while down"}, timeout=1.0)
    broker.start()  # a fresh broker: no retained messages survive, the service must re-publish them
    # $state comes back only after the service renewed its subscriptions (the broker keeps one client's packets
    # in order), so once it is here a request cannot slip past.
    assert lifecycle(bus, device, lambda d: d["state"] == "ready")["state"] == "ready"
    assert bus.call("demo", "echo", {"text": "after"}, timeout=10)["text"] == "after"
    _t, counter = bus.wait_for(f"benchbus/{device}/demo/state/counter", timeout=5)
    assert counter == {"value": 1}


def test_request_sent_while_broker_down_times_out_not_hangs(make_settings, serve, bus, broker):
    serve(DemoService, make_settings(DemoSettings))
    broker.stop()
    started = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        bus.call("demo", "echo", {"text": "x"}, timeout=1.5)
    assert time.monotonic() - started < 10  # generous: the point is "returns", not a timing
    assert caught.value.code == "timeout"


def test_kill9_publishes_offline_as_last_will(spawn, bus, device):
    service = spawn(["python", "-m", "benchbus.demo"], segment="demo")
    service.kill9()
    state = lifecycle(bus, device, lambda d: d["state"] == "offline", timeout=30)
    assert state["state"] == "offline"


def test_sigterm_finishes_inflight_then_offline(spawn, bus, device):
    service = spawn(["python", "-m", "benchbus.demo"], segment="demo")
    seen = []
    bus.subscribe(f"benchbus/{device}/demo/$state", lambda _t, d, _m: seen.append(d["state"]))
    sleeping = threading.Event()
    bus.subscribe(f"benchbus/{device}/demo/event/sleeping", lambda *_: sleeping.set())
    result = {}
    slow = threading.Thread(target=lambda: result.update(r=bus.call("demo", "sleep", {"seconds": 1.0}, timeout=10)))
    slow.start()
    assert sleeping.wait(10), "the sleep request never reached its handler"
    service.process.send_signal(signal.SIGTERM)
    slow.join()
    assert result["r"] == {}, "the in-flight request was not answered"
    assert service.process.wait(10) == 0
    lifecycle(bus, device, lambda d: d["state"] == "offline")
    assert "stopping" in seen and seen[-1] == "offline"
    assert seen.index("stopping") < len(seen) - 1


def test_stale_last_will_is_corrected(make_settings, serve, bus, device):
    """A last will from an earlier connection arriving while the service runs must not leave it 'offline'."""
    serve(DemoService, make_settings(DemoSettings))
    lifecycle(bus, device, lambda d: d["state"] == "ready")
    bus.connection.publish(f"benchbus/{device}/demo/$state", b'{"state": "offline"}', kind="state", retain=True)
    assert lifecycle(bus, device, lambda d: d["state"] == "ready")["state"] == "ready"


def test_sd_notify_ready_watchdog_stopping(spawn, tmp_path, device, bus):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    service = spawn(["python", "-m", "benchbus.demo"], segment="demo",
                    env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    messages = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 2:
        messages.append(sock.recv(4096).decode())
    service.process.send_signal(signal.SIGTERM)
    service.process.wait(10)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            break
        if "STOPPING=1" in messages[-1]:
            break
    sock.close()
    assert any(m.startswith("READY=1") for m in messages)
    assert sum("WATCHDOG=1" in m for m in messages) >= 2
    assert any("STOPPING=1" in m for m in messages)


def test_no_notify_socket_means_no_notifications(monkeypatch):
    from benchbus import sdnotify
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
