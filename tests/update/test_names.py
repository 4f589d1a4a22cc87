"""The robot's name: DNS-SD rules, the derived host name, stored, retained on the bus, on HTTP."""
import pytest

from benchbus import BusError
from benchbus_update import names


@pytest.mark.parametrize("name", ["OT2 Lab 3", "Pipetbot", "Ünïcode robot ✓", "a" * 63, "é" * 31 + "a"])
def test_valid_names(name):
    assert names.validate(name) == name


@pytest.mark.parametrize("name, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * 64, "64 octets"),
    ("é" * 32, "64 octets"),  # 32 characters, but 64 octets of UTF-8
    (" padded", "white space"),
    ("tab\there", "control"),
    ("new\nline", "control"),
    ("zero\u200bwidth", r"U\+200B"),
    ("e\u0301", "normal form C"),
    (42, "string"),
])
def test_invalid_names(name, reason):
    with pytest.raises(names.InvalidName, match=reason):
        names.validate(name)


@pytest.mark.parametrize("name, hostname", [
    ("OT2 Lab 3", "ot2-lab-3"),
    ("Ünïcode robot ✓", "unicode-robot"),
    ("--x--", "x"),
    ("✓✓✓", "benchbus-dev1"),
    ("a" * 63, "a" * 63),
])
def test_hostname_is_a_dns_label(name, hostname):
    assert names.hostname_for(name, "dev1") == hostname


def test_name_on_the_bus_is_validated_stored_and_retained(running, bus, device):
    first = bus.wait_for(f"benchbus/{device}/update/state/name")[1]
    assert first == {"name": device, "hostname": names.hostname_for(device, device)}
    with pytest.raises(BusError) as caught:
        bus.call("update", "set_name", {"name": "x" * 64})
    assert caught.value.code == "invalid_request" and "name" in caught.value.message and "63" in caught.value.message
    assert bus.call("update", "set_name", {"name": "Robot Ünï"}) == {"name": "Robot Ünï", "hostname": "robot-uni"}
    seen = bus.wait_for(f"benchbus/{device}/update/state/name", lambda _t, d: d["name"] == "Robot Ünï")[1]
    assert seen["hostname"] == "robot-uni"
    assert bus.call("update", "get_name", {}) == {"name": "Robot Ünï", "hostname": "robot-uni"}
    assert running.http.get("/server/name").json()["name"] == "Robot Ünï"


def test_name_over_http(running, bus, device, start_agent):
    bad = running.http.post("/server/name", json={"name": "\x00"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad-name"
    assert running.http.post("/server/name", content=b"{not json").status_code == 400
    assert running.http.post("/server/name", json={"name": 5}).status_code == 400
    ok = running.http.post("/server/name", json={"name": "Bench 7"})
    assert ok.status_code == 200 and ok.json() == {"name": "Bench 7", "hostname": "bench-7"}
    bus.wait_for(f"benchbus/{device}/update/state/name", lambda _t, d: d["name"] == "Bench 7")
    assert running.http.get("/server/update/health").json()["name"] == "Bench 7"
    # stored: a restarted agent keeps it
    running.service.stop()
    again = start_agent()
    assert again.http.get("/server/name").json()["name"] == "Bench 7"
