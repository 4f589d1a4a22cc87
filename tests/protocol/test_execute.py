"""`benchbus-execute` and the session under it: Opentrons protocols, unmodified, on the emulated robot through the
bus. The G-code the Smoothieboard emulator received is checked against the liquid handling the run log says:
every aspirate of the run log is one intake stroke of that pipette's plunger, as long as Opentrons' own
ul-per-mm says for that volume."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchbus.testing import wait_until
from benchbus_ot2 import Robot

from .gcode import intake_strokes

HERE = Path(__file__).resolve().parent
PROTOCOLS = sorted((HERE / "protocols").glob("*.py"))
LABWARE = HERE / "labware"
PLUNGER = {"left": "B", "right": "C"}


def press_button_when_paused(stack):
    """A pause callback: the operator presses the robot's button (in another thread, as a person would)."""
    return lambda _text: threading.Thread(target=stack.press_button, daemon=True).start()


def execute(stack, protocol: Path, **robot_options):
    """Run a protocol file in this process; the run log messages and, per aspirate, Opentrons' expected stroke."""
    from benchbus_ot2 import RobotSession

    robot_options.setdefault("on_pause", press_button_when_paused(stack))
    robot_options.setdefault("pause_timeout_s", 60)
    messages: list[dict] = []
    robot = Robot(stack.device, stack.broker.settings(), **robot_options)
    with RobotSession(robot) as session:
        session.run_file(protocol, emit_runlog=messages.append, custom_labware_paths=[str(LABWARE)])
        instruments = {mount.name.lower(): pipette
                       for mount, pipette in session.hardware.hardware_instruments.items() if pipette is not None}
        expected = expected_intakes(messages, instruments)
        bottoms = {mount: pipette.plunger_positions.bottom for mount, pipette in instruments.items()}
    return messages, expected, bottoms


def expected_intakes(messages: list[dict], instruments: dict) -> list[tuple[str, float, float]]:
    """Per aspirate of the run log: mount, volume and where Opentrons' own math puts the plunger after it
    (bottom + held volume / ul-per-mm of the held volume), following the volume each pipette holds."""
    held = dict.fromkeys(instruments, 0.0)
    emptied = {"command.BLOW_OUT", "command.DROP_TIP", "command.RETURN_TIP", "command.PICK_UP_TIP"}
    expected = []
    for message in messages:
        instrument = (message.get("payload") or {}).get("instrument")
        if message["$"] != "before" or instrument is None:
            continue
        mount, volume = instrument.mount, float(message["payload"].get("volume") or 0)
        if message["name"] == "command.ASPIRATE":
            held[mount] += volume
            pipette = instruments[mount]
            end = pipette.plunger_positions.bottom + held[mount] / pipette.ul_per_mm(held[mount], "aspirate")
            expected.append((mount, volume, end))
        elif message["name"] == "command.DISPENSE":
            held[mount] = max(0.0, held[mount] - volume)
        elif message["name"] in emptied:
            held[mount] = 0.0
    return expected


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.stem)
def test_every_aspirate_in_the_run_log_is_one_plunger_stroke_on_the_board(stack, protocol):
    messages, expected, bottoms = execute(stack, protocol)
    assert expected, "the protocol aspirated nothing"
    for mount, axis in PLUNGER.items():
        wanted = [(volume, end) for m, volume, end in expected if m == mount]
        strokes = intake_strokes(stack.emulator.lines, axis, bottoms.get(mount, 0.0))
        assert len(strokes) == len(wanted), f"{mount}: {len(wanted)} aspirates, {len(strokes)} intake strokes"
        for (volume, end), stroke in zip(wanted, strokes, strict=True):
            assert stroke.end == pytest.approx(end, abs=0.002), f"{mount} aspirate of {volume} uL"


def test_a_multichannel_pipette_aspirates_on_the_right_plunger_only_and_the_rail_lights_follow(stack):
    rails: list[bool] = []
    stack.bus.subscribe(stack.bus.topic("gpio", "state", "lights"), lambda _t, data, _m: rails.append(data["on"]))
    _messages, expected, bottoms = execute(stack, HERE / "protocols" / "api_2_13_multichannel.py")
    # set_rail_lights(True) ... set_rail_lights(False), via gpio; the last state/lights may still be on its way
    wait_until(lambda: True in rails and rails[-1] is False, 10, "the rail lights on, then off again")
    assert {mount for mount, *_rest in expected} == {"right"}
    assert intake_strokes(stack.emulator.lines, "B", -100.0) == []
    assert len(intake_strokes(stack.emulator.lines, "C", bottoms["right"])) == 3  # two 10 uL transfers, one 15 uL


class Cli:
    """benchbus-execute in a subprocess; presses the robot's button whenever the run says it is paused."""

    def __init__(self, stack, protocol: Path, *extra: str):
        argv = [sys.executable, "-m", "benchbus_ot2", "--broker", stack.broker_address, "--device", stack.device,
                "-L", str(LABWARE), *extra, str(protocol)]
        self.stack = stack
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if line.startswith("paused:"):
                threading.Thread(target=self.stack.press_button, daemon=True).start()

    def wait(self, timeout: float = 240) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code


def test_the_cli_prints_opentrons_run_log_and_a_pause_waits_for_the_button(stack):
    cli = Cli(stack, HERE / "protocols" / "api_2_13_multichannel.py")
    assert cli.wait() == 0, "\n".join(cli.stderr)
    assert " Pausing robot operation: check the strips" in cli.stdout  # Opentrons' run log, as opentrons_execute
    paused = [line for line in cli.stderr if line.startswith("paused:")]
    assert paused and "check the strips" in paused[0]
    assert "resumed" in cli.stderr
    assert cli.stdout[-1].startswith(" Dropping tip into A1 of Opentrons Fixed Trash")


def test_a_pause_in_an_engine_protocol_waits_for_the_button(stack):
    pauses: list[str] = []

    def operator(text: str) -> None:
        pauses.append(text)
        threading.Thread(target=stack.press_button, daemon=True).start()
    messages, _expected, _bottoms = execute(stack, HERE / "protocols" / "api_2_27_newest.py", on_pause=operator)
    assert len(pauses) == 1 and "seal the tubes" in pauses[0]
    texts = [m["payload"]["text"] for m in messages if m["$"] == "before"]
    paused_at = next(i for i, text in enumerate(texts) if "seal the tubes" in text)
    assert any(text.startswith("Consolidating") for text in texts[paused_at:])  # it went on after the button


def test_runs_one_after_another_leave_the_robot_ready_for_the_next(stack):
    """The engine ends every run with a stop; with nothing moving that must not halt the robot into an alarm
    (the next run, homed already, would then have every move refused)."""
    for name in ("api_2_15_engine.py", "api_2_27_newest.py", "api_2_0_transfer_mix.py"):
        execute(stack, HERE / "protocols" / name)
        _topic, alarm = stack.bus.wait_for(stack.bus.topic("smoothie", "state", "alarm"))
        assert alarm["active"] is False, (name, alarm)


@pytest.mark.parametrize("api_level", ["2.13", "2.15"])
def test_the_cli_fails_a_protocol_asking_for_a_pipette_the_robot_does_not_carry(stack, tmp_path, api_level):
    protocol = tmp_path / "wrong_pipette.py"
    protocol.write_text(f"metadata = {{'apiLevel': '{api_level}'}}\n\n\ndef run(protocol):\n"
                        "    protocol.load_instrument('p1000_single_gen2', 'left')\n")
    cli = Cli(stack, protocol)
    assert cli.wait() == 1
    errors = "\n".join(cli.stderr)
    assert "p1000_single_gen2 was requested but p300_single_v2.1 is present" in errors and "line 5" in errors


def test_a_service_hands_its_own_bus_client_in_and_keeps_it(stack, client_named):
    """The protocol runner (a service) runs files on its own started client; the session leaves it open."""
    from benchbus_ot2 import RobotSession

    runner = client_named("runner")
    lease_holders: list[str] = []
    runner.subscribe(runner.topic("smoothie", "state", "lease"),
                     lambda _t, data, _m: lease_holders.append((data or {}).get("holder")))
    with RobotSession(Robot(stack.device, bus=runner)) as session:
        session.run_file(HERE / "protocols" / "api_2_0_transfer_mix.py")
    assert "dev/runner" in lease_holders  # the run held the lease under the service's own name
    assert runner.call("smoothie", "position", {})["X"] > 0  # the client is still open


@pytest.mark.parametrize("protocol", ["api_2_0_transfer_mix.py", "api_2_15_engine.py"])
def test_ctrl_c_halts_the_robot_and_gives_the_lease_back(stack, protocol):
    cli = Cli(stack, HERE / "protocols" / protocol)
    def aspirating() -> bool:  # running: the first aspirate reached the board
        assert cli.process.poll() is None, "\n".join(cli.stderr)
        return bool(intake_strokes(stack.emulator.lines, "B", -14.5))
    wait_until(aspirating, 60, "the first aspirate")
    halts: list[dict] = []
    stack.bus.subscribe(stack.bus.topic("smoothie", "event", "halted"), lambda _t, data, _m: halts.append(data))
    cli.process.send_signal(signal.SIGINT)
    assert cli.wait() == 130, "\n".join(cli.stderr[-20:])
    assert "interrupted: halting the robot" in cli.stderr
    _topic, alarm = stack.bus.wait_for(stack.bus.topic("smoothie", "state", "alarm"), lambda _t, d: d["active"])
    assert alarm["message"].startswith("halted by dev/ot2-") and halts and halts[-1]["by"].startswith("dev/ot2-")
    stack.bus.wait_for(stack.bus.topic("smoothie", "state", "lease"), lambda _t, d: d.get("holder") is None)
