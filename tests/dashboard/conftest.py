"""Fixtures of the dashboard tests: the whole stack on emulated hardware in-process, and a headless Chromium.

The stack: SAMD21 emulator (TCP, real bytes) + samd-bridge, broadcast-scheduler (0.5 s cycles), calibration-store
(the shipped example calibrations), gpio-service on its simulated chip, Smoothieboard emulator + smoothie-bridge,
and the gateway serving the dashboard. The browser is Debian's Chromium driven by playwright-core (driver.mjs): the
test tells it what to do one JSON line at a time.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian package chromium; ./dev installs it)"
    if shutil.which("node") is None:
        return "node is missing (Debian package nodejs; ./dev installs it)"
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core is not installed: npm ci in {HERE} (./dev does it)"
    return None


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, log_path: Path):
        self._log = open(log_path, "wb")  # noqa: SIM115 - the browser owns its log until close()
        self.process = subprocess.Popen(["node", str(HERE / "driver.mjs")], cwd=HERE, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        self._lock = threading.Lock()

    def order(self, op: str, timeout: float = 60.0, **fields: Any) -> Any:
        with self._lock:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
            line = self._readline(timeout)
        reply = json.loads(line)
        if not reply["ok"]:
            raise BrowserError(f"browser {op} failed: {reply['error']}")
        return reply["result"]

    def _readline(self, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            self.process.kill()
            raise BrowserError(f"the browser driver did not answer (log: {self._log.name})")
        return result[0]

    def open(self, url: str, width: int, height: int) -> dict:
        return self.order("open", url=url, width=width, height=height)

    def eval(self, js: str) -> Any:
        return self.order("eval", js=js)

    def wait(self, js: str, timeout_s: float = 60.0) -> Any:
        """The value of a JS expression once it is truthy (BrowserError when it never is). The default bound is
        generous: a wait ends when its condition holds, and a loaded machine can take a protocol's analysis (an
        Opentrons simulation) well past 20 s."""
        try:
            return self.order("wait", timeout=timeout_s + 10, js=js, timeout_ms=int(timeout_s * 1000))
        except BrowserError as error:
            raise BrowserError(f"{error}\n  waiting for: {js}\n  page problems: {self.problems()}") from None

    def text(self, selector: str) -> str:
        return self.eval(f"document.querySelector({json.dumps(selector)}).textContent")

    def click(self, selector: str) -> None:
        self.order("click", selector=selector)

    def fill(self, selector: str, text: str) -> None:
        self.order("fill", selector=selector, text=text)

    def pick_files(self, selector: str, paths: list[Path]) -> None:
        self.order("files", selector=selector, paths=[str(path) for path in paths])

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        self.order("screenshot", path=str(path), full_page=full_page)
        return path

    def problems(self) -> list[str]:
        return self.order("problems")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.order("close", timeout=20)
                self.process.stdin.close()
                self.process.wait(10)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._log.close()


# -- fixtures ---------------------------------------------------------------------------------------------------------

TOKEN = "dashboard-test-token-0123"
FAST_LINE = dict(baudrate=230400, reply_delay_s=0.002, hold_s=0.002)
ROBOT_SPEEDUP = 400.0  # motion runs this many times faster than on the robot (tests never measure time)
REPO = HERE.parents[1]


@pytest.fixture
def rig_emulator():
    """The SAMD21 boards on a TCP port at a fast baud rate (real bytes)."""
    from benchbus_samd.emulator.line import SamdEmulator
    from benchbus_samd.emulator.wire import LineTiming
    emulator = SamdEmulator(LineTiming(stir_hold_s=0.004, **FAST_LINE))
    emulator.start_tcp(0)
    yield emulator
    emulator.close()


@pytest.fixture
def robot_emulator():
    from benchbus_smoothie.emulator.board import SmoothieEmulator
    emulator = SmoothieEmulator(speedup=ROBOT_SPEEDUP, baud=None)
    emulator.start_tcp()
    yield emulator
    emulator.stop()


@pytest.fixture
def stack(tmp_path, rig_emulator, robot_emulator, make_settings, serve, bus):
    """The whole system on emulated hardware (the emulators outlive the services: they are set up first)."""
    from benchbus_calibration.service import CalibrationService
    from benchbus_calibration.settings import CalibrationSettings
    from benchbus_gateway.service import GatewayService
    from benchbus_gateway.settings import GatewaySettings
    from benchbus_gpio.service import GpioService
    from benchbus_gpio.settings import GpioSettings
    from benchbus_samd.service import SamdService
    from benchbus_samd.settings import SamdSettings
    from benchbus_scheduler.service import SchedulerService
    from benchbus_scheduler.settings import SHARED, SchedulerSettings
    from benchbus_smoothie.service import SmoothieService
    from benchbus_smoothie.settings import SmoothieSettings

    serve(CalibrationService, make_settings(CalibrationSettings, data_dir=tmp_path / "calibration", seed_example=True))
    serve(GpioService, make_settings(GpioSettings, backend="sim", debounce_ms=5.0))
    serve(SamdService, make_settings(SamdSettings, port=rig_emulator.url, hold_overrides={"stir": 0.004}, retries=0,
                                    **FAST_LINE))
    conf_path = tmp_path / "scheduler" / "conf.yml"
    conf_path.parent.mkdir()
    conf_text = (SHARED / "conf.yml").read_text().replace("broadcast_timing: 20", "broadcast_timing: 0.5")
    conf_path.write_text(conf_text)
    serve(SchedulerService, make_settings(SchedulerSettings, conf_path=conf_path, transact_timeout_s=5.0))
    serve(SmoothieService, make_settings(SmoothieSettings, port=robot_emulator.url, ack_timeout_s=1.0,
                                        boot_timeout_s=1.0, recovery_pause_s=0.0))
    # loopback is trusted by default; the page's token flow is what this test looks at, so nothing is trusted here
    gateway = serve(GatewayService, make_settings(GatewaySettings, host="127.0.0.1", port=0, token=TOKEN,
                                                 trusted_networks=[], data_dir=tmp_path / "gateway"))
    return type("Stack", (), {"gateway": gateway, "url": gateway.url, "rig": rig_emulator, "robot": robot_emulator,
                             "token": TOKEN,
                             "conf_text": conf_text})


@pytest.fixture
def browser(tmp_path, stack):
    """A headless Chromium with nothing open yet (closed before the stack stops, so it never sees the gateway go)."""
    reason = missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the dashboard test cannot run in CI: {reason}")
        pytest.skip(reason)
    driver = Browser(tmp_path / "browser.log")
    yield driver
    driver.close()
