"""The emulated Smoothieboard: the machine on a UART, the line protocol between them, and the faults a test arms.

In tests: `emu = SmoothieEmulator(speedup=200); url = emu.start_tcp()` (`socket://127.0.0.1:<port>` for pyserial),
then `emu.lines` (the G-code log), `emu.position`, `emu.homed`, `emu.inject("silence")`, `emu.drop_port(0.5)`,
`emu.stop()`.
"""
from __future__ import annotations

from .faults import FaultPlan
from .machine import DEFAULT_VERSION, Machine
from .motion import AxisConfig
from .protocol import LineProtocol, split_codes
from .transport import Connection, Uart


class SmoothieEmulator(Machine):
    def __init__(self, speedup: float = 1.0, echo: bool = False, baud: int | None = None,
                 pipettes: dict[str, tuple[str, str] | None] | None = None, version: str = DEFAULT_VERSION,
                 axes: dict[str, AxisConfig] | None = None):
        uart = Uart(baud, on_line=self._line_received, on_halt=self.halt, status=self.status_report)
        super().__init__(uart, FaultPlan(), speedup, version, pipettes, axes)
        self.protocol = LineProtocol(self, uart, self.faults, echo)
        self.lines = self.protocol.lines  # every non-empty line received, as received (trimmed)

    def _line_received(self, conn: Connection, line: str) -> None:
        self.protocol.submit(conn, line)

    # -- what tests look at and do -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.uart.url

    @property
    def port(self) -> int | None:
        return self.uart.port

    @property
    def pty_path(self) -> str | None:
        return self.uart.pty_path

    def codes(self) -> list[str]:
        """Every G/M code received, one per entry (a line may carry several)."""
        return [code for line in self.lines for code in split_codes(line)]

    def clear_log(self) -> None:
        self.lines.clear()

    def inject(self, kind: str, count: int = 1) -> None:
        """Arm a fault for the next `count` lines it applies to: silence, garble, drop_ok, limit_alarm, close."""
        self.faults.inject(kind, count)

    def clear_faults(self) -> None:
        self.faults.clear()

    def start_tcp(self, port: int = 0, host: str = "127.0.0.1") -> str:
        return self.uart.start_tcp(port, host)

    def start_pty(self, link: str | None = None) -> str:
        return self.uart.start_pty(link)

    def drop_port(self, down_s: float = 0.5) -> None:
        """The TCP port closes, the open connection with it (a cable pulled), and listens again after `down_s`."""
        self.uart.drop_port(down_s)

    def stop(self) -> None:
        self.uart.stopped.set()
        self._motion.close()
        self.protocol.stop()
        self.uart.stop()

    def __enter__(self) -> SmoothieEmulator:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
