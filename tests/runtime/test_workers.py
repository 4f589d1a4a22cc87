"""The handler pool: at most `size` jobs at once, a failing job costs only itself, shutdown drops what waits."""
from __future__ import annotations

import threading

import pytest

from benchbus.testing import wait_until
from benchbus.workers import WorkerPool


def test_runs_up_to_size_jobs_at_once_and_queues_the_rest() -> None:
    pool = WorkerPool(3, "t")
    release = threading.Event()
    running: list[int] = []
    done: list[int] = []

    def job(n: int) -> None:
        running.append(n)
        release.wait(10)
        done.append(n)

    for n in range(5):
        pool.submit(job, n)
    wait_until(lambda: len(running) == 3, what="three jobs running")
    assert len(running) == 3  # the other two wait for a free worker
    release.set()
    wait_until(lambda: len(done) == 5, what="every job done")
    assert sorted(done) == [0, 1, 2, 3, 4]
    pool.shutdown()


def test_a_failing_job_leaves_its_worker_serving() -> None:
    pool = WorkerPool(1, "t")
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    pool.submit(boom)
    pool.submit(done.set)
    assert done.wait(10)
    pool.shutdown()


def test_shutdown_drops_waiting_jobs_and_refuses_new_ones() -> None:
    pool = WorkerPool(1, "t")
    release, ran = threading.Event(), threading.Event()
    pool.submit(release.wait, 10)
    pool.submit(ran.set)  # waits behind the first
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(ran.set)
    release.set()
    wait_until(lambda: not any(t.is_alive() for t in pool._threads), what="the worker gone")
    assert not ran.is_set()
