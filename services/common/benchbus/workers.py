"""The threads that run a service's handlers: a bounded pool fed by one SimpleQueue.

Why not concurrent.futures.ThreadPoolExecutor: its submit() builds a Future and a work item and takes two locks
and a semaphore on paho's network thread for every request, and nobody here reads the Future (py-spy with --gil:
39 % of a demo service's GIL time sat in submit). A SimpleQueue hand-off is one C call that wakes one idle
worker. Threads start on demand, like the executor's, up to `size`.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("benchbus.workers")

Job = tuple[Callable[..., None], tuple[Any, ...]]


class WorkerPool:
    def __init__(self, size: int, name: str):
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job (under _lock)
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) on a worker; `fn` handles its own errors (a worker survives any it lets through)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is shut down")
            if self._idle > 0:
                self._idle -= 1  # that worker is taken: a second job arriving now starts another one
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put((fn, args))

    def shutdown(self) -> None:
        """Stop taking jobs; jobs not yet started are dropped, running ones finish on their daemon threads."""
        with self._lock:
            self._closed = True
            workers = len(self._threads)
        while True:  # drop what waits, then wake every worker to leave
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in range(workers):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # fn reports its own errors; this is the last line that keeps the worker alive
                log.exception("job on %s failed", threading.current_thread().name)
            with self._lock:
                self._idle += 1
