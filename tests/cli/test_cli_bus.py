"""`status`, `call`, `watch` and `health` against a real broker and the demo service."""
from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from benchbus.settings import BrokerSettings
from benchbus.snapshot import read_retained

DEMO = ["python", "-m", "benchbus.demo"]


def publish_retained(broker, messages: dict[str, dict]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic_name, payload in messages.items():
            client.publish(topic_name, json.dumps(payload), qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_status_lists_every_service_from_retained_state(broker, device, cli):
    states = {f"svc{i:02d}": "ready" for i in range(30)} | {"svc07": "degraded", "svc21": "offline"}
    publish_retained(broker, {f"benchbus/{device}/{name}/$state": {"state": state, "version": "9.9", "pid": i}
                              | ({"reason": "door open"} if state == "degraded" else {})
                              for i, (name, state) in enumerate(states.items())})
    run = cli("status")
    rows = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()[1:] if line.startswith("svc")}
    assert rows == states
    assert next(line for line in run.stdout.splitlines() if line.startswith("svc07")).endswith("door open")
    assert run.returncode == 1  # not every one is ready
    assert f"broker {broker.host}:{broker.port}" in run.stdout


def test_status_is_zero_when_every_service_is_ready(spawn, device, cli):
    spawn(DEMO, segment="demo")
    run = cli("status")
    assert run.returncode == 0, run.stdout + run.stderr
    assert [line.split()[:2] for line in run.stdout.splitlines()[1:2]] == [["demo", "ready"]]


def test_snapshot_has_every_retained_message_when_it_returns(broker, device):
    """More retained messages than a broker's usual in-flight window (20): none may be missing."""
    expected = {f"benchbus/{device}/s{i}/$state": {"state": "ready", "n": i} for i in range(150)}
    publish_retained(broker, expected)
    found = read_retained(BrokerSettings(host=broker.host, port=broker.port), [f"benchbus/{device}/+/$state"])
    assert {t: json.loads(p) for t, p in found.items()} == expected


def test_status_names_the_device_and_the_ones_that_are_there(broker, device, cli):
    publish_retained(broker, {f"benchbus/{device}-other/demo/$state": {"state": "ready"}})
    run = cli("status")
    assert run.returncode == 1
    assert device in run.stderr and f"{broker.host}:{broker.port}" in run.stderr
    assert "devices with services there:" in run.stderr and f"{device}-other" in run.stderr


def test_unknown_service_on_an_empty_device_names_the_devices_that_are_there(broker, device, cli):
    publish_retained(broker, {f"benchbus/{device}-other/demo/$state": {"state": "ready"}})
    run = cli("call", "demo", "echo", '{"text": "x"}')
    assert run.returncode == 3  # demo is declared, just not running on this device
    run = cli("call", "mystery", "go")
    assert run.returncode == 2
    message = json.loads(run.stderr)["error"]["message"]
    assert "Other devices on this broker:" in message and f"{device}-other" in message


def test_unknown_service_is_named_with_the_known_ones(spawn, cli):
    spawn(DEMO, segment="demo")
    run = cli("call", "smothie", "home", "--timeout", "600")  # answered at once, not after the timeout
    assert run.returncode == 2
    message = json.loads(run.stderr)["error"]["message"]
    assert "'smothie'" in message and "Did you mean smoothie?" in message and "demo" in message


def test_unknown_command_is_named_with_the_service_commands(cli):
    run = cli("call", "demo", "ech", "--timeout", "600")
    assert run.returncode == 2
    error = json.loads(run.stderr)["error"]
    assert error["code"] == "not_found"
    assert "'ech'" in error["message"] and "Did you mean echo?" in error["message"]
    assert "increment" in error["message"]


def test_declared_service_that_is_not_running_is_said_at_once(cli):
    run = cli("call", "smoothie", "home", "--timeout", "600")
    assert run.returncode == 3
    error = json.loads(run.stderr)["error"]
    assert error["code"] == "unavailable" and "smoothie is not running" in error["message"]


def test_offline_service_is_said_at_once(spawn, cli):
    spawn(DEMO, segment="demo").terminate()
    run = cli("call", "demo", "echo", '{"text": "x"}', "--timeout", "600")
    assert run.returncode == 3
    assert "demo is offline" in json.loads(run.stderr)["error"]["message"]


def test_default_timeout_comes_from_the_contract(spawn, cli):
    """demo/sleep declares 35 s: six seconds of sleep is no timeout (the old default of 5 s made it one)."""
    spawn(DEMO, segment="demo")
    run = cli("call", "demo", "sleep", '{"seconds": 6}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {}


def test_call_prints_the_result_as_json(spawn, cli):
    spawn(DEMO, segment="demo")
    run = cli("call", "demo", "echo", '{"text": "hi", "count": 3}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"text": "hi", "count": 3}


def test_payload_from_stdin(spawn, cli):
    spawn(DEMO, segment="demo")
    run = cli("call", "demo", "echo", "-", stdin='{"text": "from stdin"}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"text": "from stdin", "count": 1}


def test_bad_json_payload_is_a_usage_error(cli):
    run = cli("call", "demo", "echo", "{text: hi}")
    assert run.returncode == 2
    assert json.loads(run.stderr)["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("seconds", [2.0])
def test_watch_lasts_the_seconds_asked(spawn, cli, seconds):
    spawn(DEMO, segment="demo")
    started = time.monotonic()
    run = cli("watch", "--seconds", str(seconds), timeout=seconds + 20)  # it ends (else TimeoutExpired)
    assert time.monotonic() - started >= seconds  # and not before its time
    assert run.returncode == 0
    assert "/demo/$state [retained]" in run.stdout


def test_watch_takes_a_filter_under_the_device_and_stops_after_count(spawn, device, cli):
    spawn(DEMO, segment="demo")
    run = cli("watch", "demo/$state", "--count", "1", "--seconds", "20")
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and f"benchbus/{device}/demo/$state [retained]" in lines[0]


def test_health_reads_the_retained_state(spawn, cli):
    assert cli("health", "demo").returncode == 1
    service = spawn(DEMO, segment="demo")
    healthy = cli("health", "demo")
    assert healthy.returncode == 0 and "demo: ready" in healthy.stdout
    service.terminate()
    assert cli("health", "demo").returncode == 1


def test_unreachable_broker_is_named(cli, stacks_dir):
    from benchbus.testing.broker import free_port

    port = free_port()
    run = cli("status", "--broker", f"127.0.0.1:{port}", bus=False)
    assert run.returncode == 3
    assert f"127.0.0.1:{port}" in run.stderr
