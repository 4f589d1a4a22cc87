"""Where the line's bytes go: a TCP port (every connected client on the same bus) or a pty (a stable symlink
across reopenings), and the timeline that delivers bytes at the times the baud rate gives them."""
from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import select
import socket
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path


class Timeline:
    """Runs callables at monotonic times on one thread (byte pacing, port coming back)."""

    def __init__(self):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="samd-emulator-timeline", daemon=True)
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception as exc:  # a failing action must not stop the line
                print(f"samd emulator: timed action failed: {exc!r}", file=sys.stderr)


# -- transports ----------------------------------------------------------------------------------------------------


class TcpTransport:
    """A TCP port on which every connected client is on the same bus (a probe connecting and leaving is harmless)."""

    def __init__(self, host: str, port: int, on_bytes: Callable[[bytes], None]):
        self.host = host
        self.port = port
        self.on_bytes = on_bytes
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.generation = 0

    def open(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self.generation += 1
        threading.Thread(target=self._accept, args=(listener,), name="samd-emulator-accept", daemon=True).start()
        return self.port

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._clients.add(client)
            threading.Thread(target=self._read, args=(client,), name="samd-emulator-read", daemon=True).start()

    def _read(self, client: socket.socket) -> None:
        while True:
            try:
                data = client.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self._lock:
                    self._clients.discard(client)
                client.close()
                return
            self.on_bytes(data)

    def write(self, data: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.sendall(data)

    def close(self) -> None:
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); a bare close would leave the kernel's socket listening
            # (and a bridge reconnecting to a port that was meant to be gone) until that accept returned.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def describe(self) -> str:
        return f"socket://{self.host}:{self.port}"


class PtyTransport:
    """A pty; with `link`, a stable symlink to the current slave (a new pty each time the port comes back)."""

    def __init__(self, link: Path | None, on_bytes: Callable[[bytes], None]):
        self.link = Path(link) if link else None
        self.on_bytes = on_bytes
        self.master = self.slave = -1
        self.path = ""
        self._stop_r = self._stop_w = -1
        self.generation = 0

    def open(self) -> str:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.path = os.ttyname(self.slave)
        if self.link is not None:
            temporary = self.link.with_name(self.link.name + ".new")
            temporary.unlink(missing_ok=True)
            os.symlink(self.path, temporary)
            os.replace(temporary, self.link)
        self._stop_r, self._stop_w = os.pipe()
        self.generation += 1
        threading.Thread(target=self._read, args=(self.master, self._stop_r), name="samd-emulator-pty",
                         daemon=True).start()
        return str(self.link or self.path)

    def _read(self, master: int, stop: int) -> None:
        while True:
            ready, _, _ = select.select([master, stop], [], [])
            if stop in ready:
                return
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if data:
                self.on_bytes(data)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, data)

    def close(self) -> None:
        if self.master < 0:
            return
        os.write(self._stop_w, b"x")
        for fd in (self.master, self.slave, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self.slave = -1
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.link or self.path)
