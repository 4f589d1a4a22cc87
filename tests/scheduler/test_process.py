"""The scheduler as a process: kill -9 while commands are being stored, and the `benchbus up` plug-in."""
from __future__ import annotations

import threading
from pathlib import Path

import yaml

from benchbus import BusError
from benchbus.settings import BrokerSettings
from benchbus.up import UpContext, discover
from benchbus_scheduler import conf as conffile

from .conftest import DEFAULT

SERVICE = ["python", "-m", "benchbus_scheduler.service"]


def test_every_acknowledged_command_survives_kill_9(spawn, bus, tmp_path):
    """Commands stream in while the service is killed: the file is always valid and holds every replied command."""
    path = tmp_path / "conf.yml"
    path.write_text(DEFAULT.read_text())
    env = {"BENCHBUS_SCHEDULER_CONF_PATH": str(path), "BENCHBUS_SCHEDULER_START_PAUSED": "true"}
    for kill in range(3):
        process = spawn(SERVICE, "scheduler", env=env)
        acknowledged: list[int] = []
        stop = threading.Event()

        def send(stop: threading.Event, acknowledged: list[int]) -> None:
            for n in range(10_000):
                if stop.is_set():
                    return
                try:
                    bus.call("scheduler", "command", {"param": "stir", "value": [str(n % 90)] * 16}, timeout=2)
                except BusError:
                    return  # the service is gone
                acknowledged.append(n)
        sender = threading.Thread(target=send, args=(stop, acknowledged))
        sender.start()
        while len(acknowledged) < 5 + 7 * kill:  # kill at a different point each time
            sender.join(0.01)
            assert sender.is_alive(), f"commands stopped being answered:\n{process.log()}"
        process.kill9()
        stop.set()
        sender.join()
        stored = conffile.load(path)  # valid, or this raises
        last = acknowledged[-1] % 90
        value = int(stored.params["stir"].value[0])
        assert value in (last, (last + 1) % 90), "the last acknowledged command (or the one after it) is on disk"
        assert list(yaml.safe_load(path.read_text())) == list(yaml.safe_load(DEFAULT.read_text()))


def test_up_plugin_gives_the_scheduler_its_own_copy_of_the_default_conf(tmp_path):
    ctx = UpContext(broker=BrokerSettings(), device="d", data_dir=tmp_path, http_port=0)
    units = [u for u in discover(ctx, {"scheduler"}) if u.segment == "scheduler"]
    assert len(units) == 1
    conf_path = Path(units[0].env["BENCHBUS_SCHEDULER_CONF_PATH"])
    assert conf_path.parent == tmp_path / "scheduler" and conf_path.read_text() == DEFAULT.read_text()
    conf_path.write_text(conf_path.read_text().replace("broadcast_timing: 20", "broadcast_timing: 30"))
    discover(ctx, {"scheduler"})
    assert "broadcast_timing: 30" in conf_path.read_text(), "a later start keeps the user's conf"
