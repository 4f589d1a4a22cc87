"""An `ALARM:` the board prints on its own between two acks is not lost.

A limit switch can trip after the move's ack and before the driver writes its `M400`; the board then answers the
`M400` with only `error:Alarm lock`. The reason is the line printed in between, which used to be thrown away with
the input buffer's leftover oks. A scripted board on a real socket prints it exactly there.
"""
from __future__ import annotations

import socket
import threading

import pytest

from benchbus_smoothie.driver import SmoothieDriver
from benchbus_smoothie.gcode import AlarmLock, AlarmResponse
from benchbus_smoothie.serial_link import SerialLink


class ScriptedBoard:
    """Answers each received line with the next scripted reply (bytes, written in one send)."""

    def __init__(self, replies: list[bytes]):
        self.replies = list(replies)
        self.lines: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            pending = b""
            while self.replies:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                pending += chunk
                while b"\r\n\r\n" in pending and self.replies:
                    line, pending = pending.split(b"\r\n\r\n", 1)
                    self.lines.append(line.decode().strip())
                    conn.sendall(self.replies.pop(0))
            conn.recv(4096)  # hold the line open until the driver closes it

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def board_with(request):
    boards: list[ScriptedBoard] = []
    links: list[SerialLink] = []

    def start(replies: list[bytes]) -> tuple[ScriptedBoard, SmoothieDriver]:
        board = ScriptedBoard(replies)
        link = SerialLink(f"socket://127.0.0.1:{board.port}")
        boards.append(board)
        links.append(link)
        return board, SmoothieDriver(link)

    yield start
    for link in links:
        link.close()
    for board in boards:
        board.close()


def test_an_alarm_printed_after_the_moves_ack_is_the_reason_its_m400_fails(board_with):
    board, driver = board_with([b"ok\r\nok\r\nALARM: Hard limit -X\r\n", b"error:Alarm lock\r\n"])
    with pytest.raises(AlarmResponse) as err:
        driver.send("G0 X100", motion=True)
    assert err.value.raw == "ALARM: Hard limit -X" and err.value.command == "M400"
    assert board.lines == ["G0 X100", "M400"]


def test_a_halt_between_our_commands_stays_a_lock_with_its_reason(board_with):
    board, driver = board_with([b"ok\r\nok\r\n", b"ok\r\nok\r\nALARM: Kill button pressed - reset or M999\r\n",
                                b"error:Alarm lock\r\n"])
    driver.send("M114.2")
    driver.send("M119")
    with pytest.raises(AlarmLock) as err:
        driver.send("G0 X100")
    assert err.value.raw == "ALARM: Kill button pressed - reset or M999" and err.value.command == "G0 X100"


def test_leftover_oks_between_acks_are_no_error(board_with):
    _board, driver = board_with([b"ok\r\nok\r\nok\r\n", b"ok\r\nok\r\n"])
    driver.send("M114.2")
    assert driver.send("M119") == ""
