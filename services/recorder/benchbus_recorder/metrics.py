"""The OpenMetrics/Prometheus view of the instruments, for the tools labs already run (Prometheus, Grafana).

Fed from what the recorder hears (broadcasts, overruns, `$state`, the samd-bridge's `state/bus`, the
smoothie-bridge's states) and exposed by prometheus_client's own exposition (text format or OpenMetrics as the
scraper asks). Everything is labelled by device, so one lab recorder serves a fleet.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LIFECYCLE = ("starting", "ready", "degraded", "stopping", "offline")
OD_KEYS = ("od", "od_90")  # calibrated OD when a fit made one, else the raw od_90 reading
TEMP_KEY = "temp"


class Instruments(Collector):
    """Latest values per device, updated by the recorder's threads, read by a scrape."""

    def __init__(self, ingest_stats: Any = None):
        self._lock = threading.Lock()
        self.od: dict[tuple[str, int], tuple[float, str]] = {}  # (device, vial) -> (value, kind)
        self.temp: dict[tuple[str, int], tuple[float, str]] = {}
        self.cycle_s: dict[str, float] = {}
        self.broadcast_timing: dict[str, float] = {}
        self.last_broadcast: dict[str, float] = {}
        self.broadcasts: dict[str, int] = {}
        self.overruns: dict[str, int] = {}
        self.boards: dict[tuple[str, str], dict[str, Any]] = {}  # (device, param) -> samd counters
        self.robot: dict[str, dict[str, Any]] = {}  # device -> {"alarm": bool, "paused": bool, "homed": bool}
        self.services: dict[tuple[str, str], str] = {}  # (device, service) -> lifecycle state
        self.ingest_stats = ingest_stats

    # -- updates ---------------------------------------------------------------------------------------------------

    def broadcast(self, device: str, payload: dict) -> None:
        data = payload.get("data") or {}
        calibrated = payload.get("calibrated") or {}
        with self._lock:
            self.broadcasts[device] = self.broadcasts.get(device, 0) + 1
            self.cycle_s[device] = float(payload.get("cycle_s") or 0.0)
            self.broadcast_timing[device] = float(payload.get("broadcast_timing") or 0.0)
            self.last_broadcast[device] = float(payload.get("timestamp") or time.time())
            self._latest(self.od, device, calibrated.get("od"), "calibrated")
            if calibrated.get("od") is None:
                self._latest(self.od, device, data.get("od_90"), "raw")
            if calibrated.get(TEMP_KEY) is not None:
                self._latest(self.temp, device, calibrated.get(TEMP_KEY), "calibrated")
            else:
                self._latest(self.temp, device, data.get(TEMP_KEY), "raw")

    @staticmethod
    def _latest(target: dict, device: str, values: list | None, kind: str) -> None:
        for vial, value in enumerate(values or []):
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            target[(device, vial)] = (number, kind)

    def overrun(self, device: str) -> None:
        with self._lock:
            self.overruns[device] = self.overruns.get(device, 0) + 1

    def service_state(self, device: str, service: str, state: str) -> None:
        with self._lock:
            self.services[(device, service)] = state

    def samd_bus(self, device: str, payload: dict) -> None:
        with self._lock:
            for param, counters in (payload.get("params") or {}).items():
                if isinstance(counters, dict):
                    self.boards[(device, param)] = counters

    def robot_state(self, device: str, name: str, payload: dict) -> None:
        with self._lock:
            robot = self.robot.setdefault(device, {})
            if name == "alarm":
                robot["alarm"] = bool(payload.get("active"))
            elif name == "paused":
                robot["paused"] = bool(payload.get("paused"))
            elif name == "homed":
                robot["homed"] = all(bool(v) for v in payload.values()) if payload else False

    # -- the scrape --------------------------------------------------------------------------------------------------

    def collect(self):
        with self._lock:
            yield from self._vials()
            yield from self._cycles()
            yield from self._boards()
            yield from self._robot_and_services()
        yield from self._ingest()

    def _vials(self):
        od = GaugeMetricFamily("benchbus_vial_od", "Each vial's latest OD (calibrated when a fit exists, else the "
                               "raw od_90 reading; see the `kind` label)", labels=["device", "vial", "kind"])
        for (device, vial), (value, kind) in sorted(self.od.items()):
            od.add_metric([device, str(vial), kind], value)
        temp = GaugeMetricFamily("benchbus_vial_temperature", "Each vial's latest temperature (degrees C when "
                                 "calibrated, else the raw reading)", labels=["device", "vial", "kind"])
        for (device, vial), (value, kind) in sorted(self.temp.items()):
            temp.add_metric([device, str(vial), kind], value)
        return [od, temp]

    def _cycles(self):
        cycle = GaugeMetricFamily("benchbus_cycle_duration_seconds", "How long the last broadcast cycle took",
                                  labels=["device"])
        timing = GaugeMetricFamily("benchbus_broadcast_timing_seconds", "The configured cycle period",
                                   labels=["device"])
        last = GaugeMetricFamily("benchbus_last_broadcast_timestamp_seconds", "When the last broadcast ended",
                                 labels=["device"])
        count = CounterMetricFamily("benchbus_broadcasts", "Broadcasts heard", labels=["device"])
        overruns = CounterMetricFamily("benchbus_overruns", "Cycles longer than broadcast_timing", labels=["device"])
        for device in sorted(self.cycle_s):
            cycle.add_metric([device], self.cycle_s[device])
            timing.add_metric([device], self.broadcast_timing[device])
            last.add_metric([device], self.last_broadcast[device])
            count.add_metric([device], self.broadcasts.get(device, 0))
        for device in sorted(set(self.overruns) | set(self.cycle_s)):
            overruns.add_metric([device], self.overruns.get(device, 0))
        return [cycle, timing, last, count, overruns]

    def _boards(self):
        retries = CounterMetricFamily("benchbus_serial_retries", "Serial attempts beyond the first, per board",
                                      labels=["device", "board"])
        errors = CounterMetricFamily("benchbus_serial_errors", "Failed serial attempts per board and error kind",
                                     labels=["device", "board", "kind"])
        failed = CounterMetricFamily("benchbus_serial_failed_requests", "Transactions that failed after their "
                                     "retries, per board", labels=["device", "board"])
        for (device, board), counters in sorted(self.boards.items()):
            requests = int(counters.get("requests") or 0)
            attempts = int(counters.get("attempts") or 0)
            retries.add_metric([device, board], max(0, attempts - requests))
            failed.add_metric([device, board], int(counters.get("failed") or 0))
            for kind, n in sorted((counters.get("errors") or {}).items()):
                errors.add_metric([device, board, kind], int(n))
        return [retries, errors, failed]

    def _robot_and_services(self):
        robot = GaugeMetricFamily("benchbus_robot_state", "The robot's flags (1 true, 0 false)",
                                  labels=["device", "flag"])
        for device, flags in sorted(self.robot.items()):
            for flag, value in sorted(flags.items()):
                robot.add_metric([device, flag], 1.0 if value else 0.0)
        services = GaugeMetricFamily("benchbus_service_state", "Each service's lifecycle state (1 for the current "
                                     "one)", labels=["device", "service", "state"])
        for (device, service), state in sorted(self.services.items()):
            for candidate in LIFECYCLE:
                services.add_metric([device, service, candidate], 1.0 if candidate == state else 0.0)
        return [robot, services]

    def _ingest(self):
        stats = self.ingest_stats
        if stats is None:
            return []
        committed = CounterMetricFamily("benchbus_recorder_committed_messages", "Messages committed since start")
        committed.add_metric([], stats.committed)
        pending = GaugeMetricFamily("benchbus_recorder_pending_messages", "Messages received, not yet committed")
        pending.add_metric([], stats.pending)
        lag = GaugeMetricFamily("benchbus_recorder_commit_lag_p99_seconds", "Arrival to commit, p99 of the last 1000")
        lag.add_metric([], stats.lag_p99() or 0.0)
        return [committed, pending, lag]


def registry_for(instruments: Instruments) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(instruments)
    return registry
