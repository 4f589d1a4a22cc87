"""The line: the boards behind one half-duplex RS-485 line, as `SamdEmulator`. Host bytes arrive through the
transport, take their wire time, collide with a board's reply if one drives the line, and are cut into frames at
`!`; the addressed board stages or applies them and answers after its turnaround, byte by byte at the baud rate,
unless an armed fault bends or swallows the reply. The methods in the middle are what tests look at."""
from __future__ import annotations

import functools
import random
import threading
import time
from pathlib import Path

from ..culture import Rig
from ..culture_boards import PumpEvent, RigClock, culture_boards
from .boards import Board, PumpProgram, default_boards
from .faults import FaultPlan, reply_frame
from .transport import PtyTransport, TcpTransport, Timeline
from .wire import INPUT_LIMIT, LineTiming, ReceivedFrame, WireEvent


class SamdEmulator:
    def __init__(self, timing: LineTiming | None = None, seed: int = 1, adc_sample_s: float = 0.43e-3,
                 temp_tau_s: float = 600.0, boards: dict[str, Board] | None = None, rig: Rig | None = None,
                 time_scale: float = 1.0, late_release_s: float = 0.0):
        self.timing = timing or LineTiming()
        self._rng = random.Random(seed)
        self._fault_plan = FaultPlan(seed + 1)
        self._lock = threading.RLock()
        # a board that releases the line this much later than its nominal hold (firmware and UART latency vary)
        self.late_release_s = late_release_s
        self.rig = rig  # cultures that grow (benchbus_samd.culture); None: the static readings
        self.rig_clock: RigClock | None = None
        if rig is not None and boards is None:
            boards, self.rig_clock = culture_boards(rig, time.monotonic(), time_scale)
        self.boards = boards or default_boards(self._rng, time.monotonic(), adc_sample_s, temp_tau_s)
        self._input = bytearray()
        self._frame_started: float | None = None
        self._host_wire_until = 0.0
        self._board_windows: list[tuple[float, float]] = []  # when a board drives the line
        self._received: list[ReceivedFrame] = []
        self.wire: list[WireEvent] = []
        self.first_byte_times: list[float] = []
        self.faults_fired: list[tuple[str, str]] = []
        self.ignored: list[bytes] = []  # frames no board accepted (unknown address, wrong field count, corrupted)
        self._timeline = Timeline()
        self._transport: TcpTransport | PtyTransport | None = None
        self._generation = 0
        self._closed = False

    # -- starting ------------------------------------------------------------------------------------------------

    def start_tcp(self, port: int = 0, host: str = "127.0.0.1") -> int:
        transport = TcpTransport(host, port, self._on_bytes)
        self._transport = transport
        return transport.open()

    def start_pty(self, link: str | Path | None = None) -> str:
        transport = PtyTransport(Path(link) if link else None, self._on_bytes)
        self._transport = transport
        return transport.open()

    @property
    def url(self) -> str:
        return self._transport.describe() if self._transport else ""

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        self._timeline.close()

    def __enter__(self) -> SamdEmulator:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- what tests look at --------------------------------------------------------------------------------------

    def staged(self, param: str) -> list[str] | None:
        with self._lock:
            staged = self.boards[param].staged
            return list(staged) if staged is not None else None

    def applied(self, param: str) -> list[str]:
        with self._lock:
            return list(self.boards[param].applied)

    def acks(self, param: str) -> int:
        with self._lock:
            return self.boards[param].acks

    def wait_applied(self, param: str, values: list, timeout: float = 2.0) -> bool:
        wanted = [str(v) for v in values]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.applied(param) == wanted:
                return True
            time.sleep(0.005)
        return self.applied(param) == wanted

    def frames(self, param: str | None = None, type: str | None = None) -> list[ReceivedFrame]:
        with self._lock:
            return [f for f in self._received if (param is None or f.param == param)
                    and (type is None or f.type == type)]

    def pump_programs(self) -> list[PumpProgram | None]:
        with self._lock:
            return list(self.boards["pump"].programs)  # type: ignore[attr-defined]

    def pumps_running(self, at: float | None = None) -> list[int]:
        at = time.monotonic() if at is None else at
        return [i for i, p in enumerate(self.pump_programs()) if p is not None and p.running(at)]

    def culture(self) -> list[dict]:
        """Each vial's true state now (od, volume_ml, temp_c, influx_ml, efflux_ml, max_volume_ml, overflowed,
        growth_rate_per_h); empty without a rig."""
        with self._lock:
            if self.rig is None or self.rig_clock is None:
                return []
            self.rig_clock.sync(time.monotonic())
            return self.rig.snapshot()

    def model_time(self) -> float:
        """Model seconds since the start (monotonic time through the time scale)."""
        return self.rig_clock.model_time(time.monotonic()) if self.rig_clock is not None else time.monotonic()

    def pump_events(self) -> list[PumpEvent]:
        """Every pump program the culture pump board applied (real and model time, pump, spec)."""
        with self._lock:
            return list(getattr(self.boards["pump"], "events", []))

    def physical_limit_s(self, events: list[WireEvent] | None = None) -> float:
        """Every byte of `events` at the baud rate, plus each reply's turnaround (delay before, hold after)."""
        events = self.wire if events is None else events
        total = 0.0
        for event in events:
            total += self.timing.wire_s(len(event.data))
            if event.source == "board" and event.param is not None:
                total += self.timing.reply_delay_s + self.timing.hold_for(event.param) + self.late_release_s
        return total

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "url": self.url,
                "boards": {name: {"staged": b.staged, "applied": b.applied, "acks": b.acks}
                           for name, b in self.boards.items()},
                "pumps_running": self.pumps_running(),
                "frames": len(self._received),
                "faults_fired": len(self.faults_fired),
                "ignored": len(self.ignored),
            }

    # -- fault injection -----------------------------------------------------------------------------------------

    def inject(self, param: str, kind: str, probability: float = 1.0, count: int | None = None) -> None:
        """Arm `kind` (FAULT_KINDS) for `param`'s board: each transaction suffers it with `probability`, `count`
        times (None: until cleared)."""
        with self._lock:
            self._fault_plan.inject(self.boards, param, kind, probability, count)

    def inject_random(self, probability: float, kinds: tuple[str, ...] | None = None) -> None:
        """Every transaction on any board fails with `probability`, with a kind drawn from `kinds`."""
        with self._lock:
            self._fault_plan.inject_random(probability, kinds)

    def clear_faults(self) -> None:
        with self._lock:
            self._fault_plan.clear()

    def drop_port(self, down_s: float | None = 0.5) -> None:
        """The port closes (clients see it vanish) and comes back after `down_s`, or at `restore_port()` when None
        (a test that must act while the port is gone cannot race a clock)."""
        transport = self._transport
        if transport is None:
            return
        with self._lock:
            self._generation += 1
            self._input.clear()
            self._frame_started = None
        transport.close()
        if down_s is not None:
            self._timeline.at(time.monotonic() + down_s, self._reopen)

    def restore_port(self) -> None:
        self._reopen()

    def _reopen(self) -> None:
        if not self._closed and self._transport is not None:
            self._transport.open()

    # -- the line: bytes from the host ---------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self._trim_logs()
            start = max(now, self._host_wire_until)
            end = start + self.timing.wire_s(len(data))
            self._host_wire_until = end
            received, corrupted = self._through_line(data, start)
            self.wire.append(WireEvent(start, end, "host", None, bytes(data), corrupted))
            char_s = self.timing.char_s
            for offset, byte in enumerate(received):
                if self._frame_started is None:
                    self._frame_started = start + offset * char_s
                    self.first_byte_times.append(now)
                self._input.append(byte)
                if byte == ord("!"):
                    frame_end = start + (offset + 1) * char_s
                    self._on_frame(bytes(self._input), frame_end)
                    self._input.clear()
                    self._frame_started = None
                elif len(self._input) > INPUT_LIMIT:
                    self.ignored.append(bytes(self._input))
                    self._input.clear()
                    self._frame_started = None

    def _trim_logs(self, keep: int = 50_000) -> None:
        """A long-running emulator keeps only the recent history."""
        for log in (self.wire, self._received, self.first_byte_times, self.ignored, self.faults_fired):
            if len(log) > 2 * keep:
                del log[:-keep]

    def _through_line(self, data: bytes, start: float) -> tuple[bytes, bool]:
        """A host byte sent while a board drives the line collides and arrives corrupted."""
        char_s = self.timing.char_s
        self._board_windows = [w for w in self._board_windows if w[1] > start - 1.0]
        out = bytearray(data)
        corrupted = False
        for index in range(len(out)):
            byte_start = start + index * char_s
            byte_end = byte_start + char_s
            if any(a < byte_end and byte_start < b for a, b in self._board_windows):
                out[index] = out[index] ^ 0xA5 | 0x80
                corrupted = True
        return bytes(out), corrupted

    def _on_frame(self, raw: bytes, frame_end: float) -> None:
        text = raw.decode("latin-1")
        board, head_at = self._addressed_board(text)
        if board is None:
            self.ignored.append(raw)
            return
        body = text[head_at:]
        kind = body[len(board.address)]
        if body.count(",") != board.fields or not body.endswith(",_!"):
            self.ignored.append(raw)  # evolver_si: the comma count must be the board's own
            return
        values = body[:-3].split(",")[1:]
        self._received.append(ReceivedFrame(frame_end, board.address, kind, values, body))
        if kind == "a":
            board.apply(frame_end)
            return
        board.stage(values, frame_end)
        self._reply(board, frame_end, kind)

    def _addressed_board(self, text: str) -> tuple[Board | None, int]:
        for address in sorted(self.boards, key=len, reverse=True):
            at = text.find(address)
            while at >= 0:
                after = at + len(address)
                if after + 1 < len(text) and text[after] in "ria" and text[after + 1] == ",":
                    return self.boards[address], at
                at = text.find(address, at + 1)
        return None, -1

    # -- the line: bytes from a board ----------------------------------------------------------------------------

    def _reply(self, board: Board, frame_end: float, request_kind: str) -> None:
        fault = self._fault_plan.draw(board)
        if fault is not None:
            self.faults_fired.append((board.address, fault))
        if fault == "port_close":
            self._timeline.at(frame_end, lambda: self.drop_port(0.3))
            return
        if fault == "silence":
            return
        reply = reply_frame(fault, board, board.reply_values(frame_end), self.boards)
        start = frame_end + self.timing.reply_delay_s
        if fault == "stray_burst":
            burst = self._fault_plan.stray_burst()
            self._send(burst, frame_end + self.timing.reply_delay_s / 2, None)
            start = max(start, frame_end + self.timing.reply_delay_s / 2 + self.timing.wire_s(len(burst)))
        end = self._send(reply, start, board.address)
        self._board_windows.append((frame_end, end + self.timing.hold_for(board.address) + self.late_release_s))

    def _send(self, data: bytes, start: float, param: str | None) -> float:
        """Put `data` on the line from `start` on, each byte delivered when its last bit has been sent."""
        char_s = self.timing.char_s
        end = start + self.timing.wire_s(len(data))
        self.wire.append(WireEvent(start, end, "board", param, data))
        generation = self._generation
        per_slice = max(1, int(0.002 / char_s))  # deliver in ~2 ms slices
        for first in range(0, len(data), per_slice):
            piece = data[first:first + per_slice]
            due = start + (first + len(piece)) * char_s
            self._timeline.at(due, functools.partial(self._deliver, piece, generation))
        return end

    def _deliver(self, piece: bytes, generation: int) -> None:
        if generation == self._generation and self._transport is not None:
            self._transport.write(piece)

