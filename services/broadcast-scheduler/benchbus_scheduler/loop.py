"""The broadcast loop: cycles of pre/main/post groups, immediate commands at group boundaries, no MQTT in here.

The loop gets a `transact(step)` function (the service makes it a `samd/cmd/transact` call) and reports through
callbacks, so everything about timing and ordering lives here and everything about the bus lives in service.py.

Rules (issue 4): every `broadcast_timing` s start to start; recurring params in conf order; a group (pre + main +
post) runs uninterrupted; immediate commands run at the next group boundary, ahead of the rest of the cycle; a late
cycle is followed at once by the next and reported; one failing step never stops anything.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Callable

from .conf import CURRENT, WAIT, Conf, values_of

log = logging.getLogger("benchbus.scheduler.loop")

RECURRING, IMMEDIATE = "r", "i"


@dataclass(frozen=True)
class Step:
    group: str  # the param whose group this is
    phase: str  # pre | main | post | immediate
    param: str  # board address, or "wait"
    type: str = IMMEDIATE  # r | i
    values: tuple[str, ...] = ()
    fields_out: int = 0
    fields_in: int = 0
    seconds: float = 0.0  # for a wait


@dataclass
class Outcome:
    step: Step
    ok: bool
    duration_s: float
    reply_kind: str | None = None  # data | echo
    reply_values: list[str] = field(default_factory=list)
    error_code: str | None = None
    error_kind: str | None = None
    message: str = ""
    attempts: int | None = None
    duration_ms: float | None = None  # the bridge's own figure

    @property
    def status(self) -> str:
        return "ok" if self.ok else (self.error_kind or self.error_code or "error")


@dataclass
class Immediate:
    """A DPU command to send as one `i` frame at the next group boundary."""

    command_id: str
    param: str
    values: tuple[str, ...]
    fields_out: int
    fields_in: int
    client: str | None = None


@dataclass
class Pending:
    """A non-immediate command to a recurring param: settled by that param's next main step."""

    command_id: str
    param: str
    client: str | None = None


@dataclass
class CycleReport:
    cycle: int
    started: float  # monotonic
    duration_s: float
    broadcast_timing: float
    outcomes: list[Outcome]
    recurring: list[str]
    conf: Conf

    @property
    def overrun_s(self) -> float:
        return max(0.0, self.duration_s - self.broadcast_timing)


def group_steps(conf: Conf, name: str) -> list[Step]:
    """The steps of one param's group, `values` substituted from the conf as it is now."""
    params = conf.params
    param = params[name]
    steps = []
    for phase, subs in (("pre", param.pre), ("main", None), ("post", param.post)):
        if phase == "main":
            steps.append(Step(name, "main", name, RECURRING, tuple(values_of(param.value)),
                              param.fields_expected_outgoing, param.fields_expected_incoming))
            continue
        for sub in subs or ():
            if sub.param == WAIT:
                assert not isinstance(sub.value, list), "SubCommand makes a wait's value a number"
                steps.append(Step(name, phase, WAIT, seconds=float(sub.value)))
                continue
            target = params[sub.param]
            value = target.value if sub.value == CURRENT else sub.value
            assert not isinstance(value, float), "only a wait's value is a number"
            steps.append(Step(name, phase, sub.param, IMMEDIATE, tuple(values_of(value)),
                              target.fields_expected_outgoing, target.fields_expected_incoming))
    return steps


def group_status(outcomes: list[Outcome]) -> tuple[str, str]:
    """A group's status for the broadcast: the main step's, else the first failing pre/post step's."""
    main = next((o for o in outcomes if o.step.phase == "main"), None)
    if main is not None and not main.ok:
        return main.status, main.message
    for outcome in outcomes:
        if not outcome.ok:
            return f"{outcome.step.phase}:{outcome.step.param}:{outcome.status}", outcome.message
    return "ok", ""


class BroadcastLoop:
    def __init__(self, conf: Callable[[], Conf], transact: Callable[[Step], Outcome], *,
                 on_cycle: Callable[[CycleReport], None],
                 on_immediate: Callable[[Immediate, Outcome], None],
                 on_pending: Callable[[Pending, Outcome | None], None],
                 clock: Callable[[], float] = time.monotonic):
        self._conf = conf
        self._transact = transact
        self._on_cycle = on_cycle
        self._on_immediate = on_immediate
        self._on_pending = on_pending
        self._clock = clock
        self._lock = threading.Condition()
        self._immediates: deque[Immediate] = deque()
        self._pending: dict[str, list[Pending]] = {}
        self._paused = False
        self._stopping = False
        self._kick = False  # start a cycle now (a new conf, resume)
        self._thread: threading.Thread | None = None
        self.cycles = 0
        self.in_group = False

    # -- control (any thread) --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduler-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            self._lock.notify_all()

    def resume(self) -> None:
        with self._lock:
            if self._paused:
                self._paused = False
                self._kick = True
            self._lock.notify_all()

    def restart_timing(self) -> None:
        """A new conf: start its first cycle at the next boundary instead of waiting out the old timing."""
        with self._lock:
            self._kick = True
            self._lock.notify_all()

    def submit(self, command: Immediate) -> None:
        with self._lock:
            self._immediates.append(command)
            self._lock.notify_all()

    def expect(self, pending: Pending) -> None:
        with self._lock:
            self._pending.setdefault(pending.param, []).append(pending)

    def drop_pending(self) -> list[Pending]:
        """Forget every pending recurring command (the conf they were merged into was replaced)."""
        with self._lock:
            dropped = [p for waiting in self._pending.values() for p in waiting]
            self._pending.clear()
        return dropped

    # -- the loop thread -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_start = self._clock()
        while True:
            self._run_immediates()
            with self._lock:
                if self._stopping:
                    return
                if self._kick:
                    self._kick = False
                    next_start = min(next_start, self._clock())
                wait = None if self._paused else next_start - self._clock()
                if (wait is None or wait > 0) and not self._immediates:
                    self._lock.wait(wait)
                    continue
                if wait is None or wait > 0:
                    continue  # immediates arrived: run them, then look again
            started = self._clock()
            report = self._run_cycle(started)
            next_start = started + report.broadcast_timing
            if self._clock() > next_start:
                next_start = self._clock()  # late: the next cycle starts at once (the report says by how much)
            self._deliver(self._on_cycle, report)

    def _run_immediates(self, outcomes: list[Outcome] | None = None) -> None:
        while True:
            with self._lock:
                if not self._immediates or self._stopping:
                    return
                command = self._immediates.popleft()
            step = Step(command.param, "immediate", command.param, IMMEDIATE, command.values,
                        command.fields_out, command.fields_in)
            outcome = self._do(step)
            if outcomes is not None:
                outcomes.append(outcome)
            self._deliver(self._on_immediate, command, outcome)

    def _run_cycle(self, started: float) -> CycleReport:
        self.cycles += 1
        conf = self._conf()
        order = [name for name, p in conf.params.items() if p.recurring]
        outcomes: list[Outcome] = []
        for name in order:
            self._run_immediates(outcomes)  # a group boundary
            with self._lock:
                if self._stopping:
                    break
                conf = self._conf()  # the newest values, as a command may have changed them
                if name not in conf.params or not conf.params[name].recurring:
                    continue
                settled_by_this_group = self._pending.pop(name, [])
            group = self._run_group(conf, name)
            outcomes.extend(group)
            main = next(o for o in group if o.step.phase == "main")
            for pending in settled_by_this_group:
                self._deliver(self._on_pending, pending, main)
        self._run_immediates(outcomes)
        self._settle_not_recurring()
        return CycleReport(self.cycles, started, self._clock() - started, conf.model.broadcast_timing, outcomes,
                           order, conf)

    def _run_group(self, conf: Conf, name: str) -> list[Outcome]:
        self.in_group = True
        try:
            return [self._do(step) for step in group_steps(conf, name)]
        finally:
            self.in_group = False

    def _do(self, step: Step) -> Outcome:
        began = self._clock()
        if step.param == WAIT:
            with self._lock:  # a real pause; only a stop cuts it short
                self._lock.wait_for(lambda: self._stopping, step.seconds)
            return Outcome(step, True, self._clock() - began)
        try:
            outcome = self._transact(step)
        except Exception as exc:  # one failing step never stops the loop
            log.exception("step %s of %s failed", step.param, step.group)
            outcome = Outcome(step, False, 0.0, error_code="internal", error_kind="internal",
                              message=f"{type(exc).__name__}: {exc}")
        outcome.duration_s = self._clock() - began
        return outcome

    def _settle_not_recurring(self) -> None:
        """Pending commands whose param stopped being recurring will not be sent: say they are only stored."""
        conf = self._conf()
        with self._lock:
            stale = [name for name in self._pending if name not in conf.params or not conf.params[name].recurring]
            settled = [p for name in stale for p in self._pending.pop(name)]
        for pending in settled:
            self._deliver(self._on_pending, pending, None)

    @staticmethod
    def _deliver(callback: Callable, *args) -> None:
        try:
            callback(*args)
        except Exception:  # a reporting problem must not stop the loop either
            log.exception("loop callback %s failed", getattr(callback, "__name__", callback))
