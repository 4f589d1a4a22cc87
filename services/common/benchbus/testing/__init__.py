"""Test and benchmark support: a real Mosquitto 2 broker, services in-process or as subprocesses."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               every: float = 0.01) -> T:
    """Await a condition (never a fixed sleep): return its first true value as soon as it holds, fail naming it
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never became true within {timeout} s")
        time.sleep(every)
    return value
