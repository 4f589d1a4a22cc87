"""The runner's side of one run's child process (worker.py): start it, ask it things, hear its reports, end it.

The child holds the motion lease under its own bus client name (`runner-<pid>`). When it does not end within
`stop_grace_s` of a stop it is killed; the runner then halts the robot itself and gives the lease back under that
same client name (the child is gone, so the name is free), so a hung protocol never keeps the robot.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from benchbus.settings import BrokerSettings
import contextlib

log = logging.getLogger("benchbus.runner.child")

Report = Callable[[dict[str, Any]], None]


class ChildError(Exception):
    """The child refused a request or did not answer it."""


class Child:
    def __init__(self, mode: str, folder: Path | None, *, device: str, broker: BrokerSettings, lease_ttl_s: float,
                 on_report: Report, on_exit: Callable[[Child, int], None]):
        env = dict(os.environ, BENCHBUS_RUNNER_CHILD_BROKER=broker.model_dump_json(),
                   BENCHBUS_RUNNER_CHILD_DEVICE=device, BENCHBUS_RUNNER_CHILD_LEASE_TTL=str(lease_ttl_s))
        argv = [sys.executable, "-m", "benchbus_runner.worker", mode] + ([str(folder)] if folder else [])
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                        bufsize=1, start_new_session=True)  # a Ctrl-C at the terminal is ours
        self.client_name = f"runner-{self.process.pid}"
        self.lease_id: str | None = None
        self.ended = threading.Event()
        self.handled = threading.Event()  # the runner has handled the exit (the run's status is final)
        self._on_report, self._on_exit = on_report, on_exit
        self._pending: dict[int, Future] = {}
        self._numbers = itertools.count(1)
        self._write_lock = threading.Lock()
        # replies are taken by the reader at once; reports go through a queue to their own thread, so a caller that
        # holds the runner's lock while it waits for a reply never waits behind a report that needs that lock
        self._reports: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, name=f"child-{self.process.pid}", daemon=True).start()
        threading.Thread(target=self._dispatch, name=f"child-{self.process.pid}-reports", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("type") == "reply":
                future = self._pending.pop(message.get("req"), None)
                if future is not None:
                    future.set_result(message)
                continue
            if message.get("type") == "lease":
                self.lease_id = message.get("lease_id")
            self._reports.put(message)
        code = self.process.wait()
        self.ended.set()
        for future in list(self._pending.values()):
            future.set_result({"ok": False, "error": "the run's process ended"})
        self._reports.put(code)  # after every report: the exit is handled last

    def _dispatch(self) -> None:
        while True:
            message = self._reports.get()
            if isinstance(message, int):
                try:
                    self._on_exit(self, message)
                finally:
                    self.handled.set()
                return
            try:
                self._on_report(message)
            except Exception:
                log.exception("handling the child's report %s", message)

    def ask(self, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        number = next(self._numbers)
        future: Future = Future()
        self._pending[number] = future
        self.send({"req": number, "op": op, **fields})
        try:
            reply = future.result(timeout)
        except TimeoutError:
            self._pending.pop(number, None)
            raise ChildError(f"the run's process did not answer {op} within {timeout:.0f} s") from None
        if not reply.get("ok"):
            raise ChildError(str(reply.get("error")))
        return reply.get("result")

    def send(self, message: dict[str, Any]) -> None:
        if self.ended.is_set() or self.process.stdin is None:
            raise ChildError("the run's process has ended")
        with self._write_lock:
            try:
                self.process.stdin.write(json.dumps(message) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                raise ChildError("the run's process has ended") from None

    def stop(self, reason: str, grace_s: float) -> bool:
        """Ask the child to stop (it halts and releases); kill it when it is not gone within grace_s. True when it
        had to be killed (the caller then makes the robot safe itself)."""
        with contextlib.suppress(ChildError):
            self.send({"req": 0, "op": "stop", "reason": reason})
        if self.ended.wait(grace_s):
            return False
        self.kill()
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.ended.wait(5)
