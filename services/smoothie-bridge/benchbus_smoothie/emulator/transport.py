"""The board's UART, served on a TCP port (pyserial's socket://) or a pty: bytes in, cut into lines as the firmware
does (every CR becomes LF; Ctrl-X, `?` and `M112` act as they arrive), and replies out, buffered and paced at the
baud rate. One opener at a time: a new TCP client takes the UART over, as a new process opening the serial device
would."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tty
from collections.abc import Callable

ABORT_MESSAGE = "ALARM: Abort during cycle"


class SocketConnection:
    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()

    def read(self) -> bytes:
        try:
            return self._sock.recv(4096)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class PtyConnection:
    def __init__(self, master: int):
        self._master = master

    def read(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def close(self) -> None:
        pass  # a UART does not close; the pty lives as long as the emulator


Connection = SocketConnection | PtyConnection


class Uart:
    """`on_line(conn, line)` gets each complete line; `on_halt(message)` a halt that cannot wait for the queued lines
    (Ctrl-X with its alarm, an `M112` line with none); `status()` answers the real-time `?`."""

    def __init__(self, baud: int | None, on_line: Callable[[Connection, str], None],
                 on_halt: Callable[[str | None], None], status: Callable[[], str]):
        self.baud = baud
        self._on_line = on_line
        self._on_halt = on_halt
        self._status = status
        self._out_lock = threading.Lock()
        self._out_buffer = bytearray()
        self._conn: Connection | None = None  # the connection replies go to
        self._conn_lock = threading.Lock()
        self._server: socket.socket | None = None
        self._pty: tuple[int, int] | None = None
        self.stopped = threading.Event()
        self.port: int | None = None
        self.pty_path: str | None = None

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"socket://127.0.0.1:{self.port}"
        if self.pty_path is not None:
            return self.pty_path
        raise RuntimeError("the emulator is not started")

    def current(self) -> Connection | None:
        with self._conn_lock:
            return self._conn

    # -- opening and closing ---------------------------------------------------------------------------------------

    def start_tcp(self, port: int = 0, host: str = "127.0.0.1") -> str:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(4)
        self._server = server
        self.port = server.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="smoothie-emu-accept", daemon=True).start()
        return self.url

    def start_pty(self, link: str | None = None) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are, like a UART
        self._pty = (master, slave)  # keeping the slave open: reads of the master never see EIO between clients
        self.pty_path = os.ttyname(slave)
        if link:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(self.pty_path, link)
        conn = PtyConnection(master)
        with self._conn_lock:
            self._conn = conn
        threading.Thread(target=self._read_loop, args=(conn,), name="smoothie-emu-pty", daemon=True).start()
        return self.pty_path

    def drop_port(self, down_s: float = 0.5) -> None:
        """The TCP port closes, the open connection with it (a cable pulled), and listens again after `down_s`."""
        server, self._server = self._server, None
        if server is None:
            return
        host, port = server.getsockname()[:2]
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept loop, which then ends
        server.close()
        self.drop_connection()
        timer = threading.Timer(down_s, self._listen_again, args=(host, port))
        timer.daemon = True
        timer.start()

    def drop_connection(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _listen_again(self, host: str, port: int) -> None:
        if not self.stopped.is_set():
            self.start_tcp(port, host)

    def stop(self) -> None:
        self.stopped.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        self.drop_connection()
        if self._pty is not None:
            for fd in self._pty:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- bytes in --------------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self.stopped.is_set():
            server = self._server
            if server is None:  # stopped
                return
            try:
                sock, _ = server.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = SocketConnection(sock)
            with self._conn_lock:
                old, self._conn = self._conn, conn  # one UART: a new opener takes it over
            if old is not None:
                old.close()
            threading.Thread(target=self._read_loop, args=(conn,), name="smoothie-emu-conn", daemon=True).start()

    def _read_loop(self, conn: Connection) -> None:
        pending = ""
        while not self.stopped.is_set():
            data = conn.read()
            if not data:
                return
            pending = self._take_bytes(conn, pending + self._realtime(data.decode("ascii", errors="replace")))

    def _realtime(self, text: str) -> str:
        """Act on the real-time characters as they arrive; the rest, every CR turned into LF, goes on."""
        kept = []
        for char in text:
            if char == "\x18":  # Ctrl-X: immediate halt
                self._on_halt(ABORT_MESSAGE)
            elif char == "?":  # real-time status query
                self.write_now(self._status())
            else:
                kept.append("\n" if char == "\r" else char)  # the firmware turns every CR into LF
        return "".join(kept)

    def _take_bytes(self, conn: Connection, pending: str) -> str:
        """Hand on each complete line; the unfinished rest is returned."""
        *complete, rest = pending.split("\n")
        for line in complete:
            if line.strip().upper().startswith("M112"):
                self._on_halt(None)  # emergency stop takes effect at once, before queued lines
            self._on_line(conn, line)
        return rest

    # -- bytes out -------------------------------------------------------------------------------------------------

    def emit(self, text: str) -> None:
        with self._out_lock:
            self._out_buffer += text.encode("ascii", errors="replace")

    def flush(self) -> None:
        with self._out_lock:
            data, self._out_buffer = bytes(self._out_buffer), bytearray()
            if not data:
                return
            if self.baud:
                time.sleep(len(data) * 10 / self.baud)  # the wire time of 8N1
            conn = self.current()
            if conn is not None:
                conn.write(data)

    def write_now(self, text: str) -> None:
        self.emit(text)
        self.flush()
