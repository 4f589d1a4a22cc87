"""Footprint of the whole system: how fast `benchbus up` has every service ready, and how much memory they take.

ours:  the installed `benchbus up` console script, started as a user starts it (a subprocess in a folder of its
       own). ready_s is the wall time from launching it until it prints that every `$state` is ready (it prints
       that only after it has seen every service's retained `$state` ready); `up` also reports its own figure.
       Then, after the services have settled, the resident memory (RSS) and unique memory (USS: what killing the
       process would free) of every service process; the broker and the emulators are listed apart.
floor: (1) a bare Python interpreter that imports nothing of ours (`python -c <wait>`), times the number of
       services: what one-process-per-service costs before any code of ours runs;
       (2) the bare benchbus demo service (runtime, paho, pydantic, the schemas, nothing else), times the number
       of services: the runtime's share. What is above (2) is the services' own code and state.
Targets (issue 11): every service ready within 3 s here, all services together under 200 MB RSS.
The last line printed is one JSON object.

    .venv/bin/python bench/footprint.py [--runs 3] [--settle 3]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchbus import BusClient
from benchbus.testing.broker import MosquittoProcess, free_port

BENCHBUS = Path(sys.executable).with_name("benchbus")
READY_MARK = "services ready in"
READY_TARGET_S = 3.0
SERVICES_TARGET_MB = 200.0
MB = 1024 * 1024


def user_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BENCHBUS_", "NOTIFY_SOCKET"))}


def memory_mb(process: psutil.Process) -> tuple[float, float | None, float | None]:
    """(RSS, USS, PSS) in MB; USS and PSS are None where the platform cannot tell them.

    RSS counts every page the process maps, shared ones (the interpreter, libraries) in full in each process, so
    a sum of RSS overstates what several processes take together; PSS divides each shared page among its sharers
    (a sum of PSS is the RAM they take together); USS is what ending the process would give back.
    """
    try:
        info = process.memory_full_info()
    except psutil.AccessDenied:
        return process.memory_info().rss / MB, None, None
    uss, pss = getattr(info, "uss", None), getattr(info, "pss", None)
    return info.rss / MB, uss and uss / MB, pss and pss / MB


def start_up(workdir: Path) -> tuple[subprocess.Popen, float, str]:
    """Launch `benchbus up`; return it, the wall seconds until its ready line, and that line."""
    argv = [str(BENCHBUS), "up", "--data-dir", str(workdir / "data"), "--http-port", str(free_port())]
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=workdir, env=user_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    output = process.stdout
    assert output is not None  # stdout=PIPE
    for line in output:
        if READY_MARK in line:
            ready_s = time.perf_counter() - started
            threading.Thread(target=lambda: [None for _ in output], daemon=True).start()  # keep draining
            return process, ready_s, line.strip()
    raise RuntimeError(f"`benchbus up` ended without reporting ready (exit {process.wait()})")


def stop_up(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()


def classify(workdir: Path, process: subprocess.Popen) -> dict[str, dict[str, psutil.Process]]:
    """The children of `up`, by kind: services (by segment), emulators (by unit name), broker."""
    info = json.loads((workdir / "data" / "up.json").read_text())
    modules = {}  # the `-m <module>` each unit runs -> (kind, name)
    for unit in info["units"]:
        kind = "services" if unit["segment"] else "emulators"
        modules[unit["name"]] = (kind, unit["segment"] or unit["name"])
    found: dict[str, dict[str, psutil.Process]] = {"services": {}, "emulators": {}, "broker": {}}
    for child in psutil.Process(process.pid).children(recursive=True):
        cmdline = child.cmdline()
        if "mosquitto" in Path(cmdline[0]).name:
            found["broker"]["mosquitto"] = child
            continue
        module = cmdline[cmdline.index("-m") + 1] if "-m" in cmdline else ""
        kind, name = unit_of(module, modules)
        found[kind][name] = child
    return found


def unit_of(module: str, units: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """benchbus_samd.emulator -> the samd-emulator unit; benchbus_samd -> the samd-bridge (segment samd); ..."""
    if module.endswith(".emulator"):
        stem = module.split(".")[0].removeprefix("benchbus_")
        return units.get(f"{stem}-emulator", ("emulators", module))
    stem = module.split(".")[0].removeprefix("benchbus_")
    for name, (kind, label) in units.items():
        if kind == "services" and (label == stem or name.startswith(stem)):
            return kind, label
    return "services", module


def measure_floor_python() -> tuple[float, float | None, float | None]:
    """A bare interpreter waiting on stdin (it imports only what the interpreter itself does)."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    time.sleep(0.5)
    figures = memory_mb(psutil.Process(process.pid))
    assert process.stdin is not None  # stdin=PIPE
    process.stdin.close()
    process.wait(10)
    return figures


def measure_floor_demo(settle_s: float) -> tuple[float, float | None, float | None]:
    """The benchbus demo service (the runtime alone) on a broker of its own, once ready."""
    broker = MosquittoProcess()
    broker.start()
    env = dict(user_environment(), BENCHBUS_DEVICE="footprint", BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port))
    process = subprocess.Popen([sys.executable, "-m", "benchbus.demo"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        with BusClient("footprint", broker.settings()) as client:
            client.wait_for("benchbus/footprint/demo/$state", lambda _t, d: (d or {}).get("state") == "ready",
                            timeout=30)
        time.sleep(settle_s)
        return memory_mb(psutil.Process(process.pid))
    finally:
        process.terminate()
        process.wait(10)
        broker.close()


def one_run(settle_s: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="benchbus-footprint-"))
    process, ready_s, line = start_up(workdir)
    try:
        time.sleep(settle_s)  # first cycles, first reads: the figures of a running system, not of a fresh one
        found = classify(workdir, process)
        memory = {kind: {name: memory_mb(p) for name, p in sorted(procs.items())} for kind, procs in found.items()}
    finally:
        stop_up(process)
    up_reported = float(line.split(READY_MARK)[1].split()[0])
    return {"ready_s": ready_s, "up_reported_s": up_reported, "memory": memory}


def total(values, index: int) -> float | None:
    figures = [v[index] for v in values]
    return None if any(f is None for f in figures) else sum(figures)


def scaled(value: float | None, factor: int) -> float | None:
    return None if value is None else value * factor


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="start and stop the whole system this many times")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after ready before measuring memory")
    args = parser.parse_args()

    runs = [one_run(args.settle) for _ in range(args.runs)]
    ready = [r["ready_s"] for r in runs]
    memory = runs[-1]["memory"]  # the figures of the last run (memory barely differs between runs)
    services = memory["services"]
    count = len(services)
    python = measure_floor_python()
    demo = measure_floor_demo(args.settle)

    services_rss = sum(figures[0] for figures in services.values())  # RSS is known everywhere
    services_uss, services_pss = (total(services.values(), i) for i in (1, 2))
    print(f"benchbus up, {args.runs} runs: ready in {', '.join(f'{r:.2f}' for r in ready)} s "
          f"(median {statistics.median(ready):.2f} s; `up` itself reported "
          f"{', '.join(str(r['up_reported_s']) for r in runs)} s)\n")
    print(f"{'process':<24}{'RSS MB':>8}{'USS MB':>8}{'PSS MB':>8}")
    for kind in ("services", "emulators", "broker"):
        print(f"-- {kind}")
        for name, figures in memory[kind].items():
            print(f"{name:<24}" + "".join(f"{fmt(f):>8}" for f in figures))
    print(f"{'services together':<24}{fmt(services_rss):>8}{fmt(services_uss):>8}{fmt(services_pss):>8}\n")
    print(f"floor, one process and x{count} (the number of services):")
    for label, figures in (("bare python", python), ("benchbus demo service", demo)):
        print(f"{label:<24}" + "".join(f"{fmt(f):>8}" for f in figures)
              + f"   x{count}: {figures[0] * count:.1f} MB RSS, {fmt(scaled(figures[1], count)).strip()} MB USS")
    ratio_python, ratio_demo = services_rss / (python[0] * count), services_rss / (demo[0] * count)
    print(f"ratio (RSS): services / {count} bare pythons = {ratio_python:.2f}; "
          f"services / {count} demo services = {ratio_demo:.2f}")
    ready_ok = statistics.median(ready) <= READY_TARGET_S
    memory_ok = services_rss < SERVICES_TARGET_MB
    print(f"targets: ready within {READY_TARGET_S:.0f} s: {'met' if ready_ok else 'MISSED'} "
          f"({statistics.median(ready):.2f} s); services under {SERVICES_TARGET_MB:.0f} MB: "
          f"RSS {'met' if memory_ok else 'MISSED'} ({services_rss:.1f} MB), "
          f"PSS {fmt(services_pss).strip()} MB, USS {fmt(services_uss).strip()} MB")

    def rounded(value):
        return None if value is None else round(value, 1)

    def per(kind: str, index: int) -> dict:
        return {name: rounded(figures[index]) for name, figures in memory[kind].items()}
    print(json.dumps({
        "ready_s": round(statistics.median(ready), 3),
        "ready_runs_s": [round(r, 3) for r in ready],
        "up_reported_s": [r["up_reported_s"] for r in runs],
        "services_rss_mb": rounded(services_rss),
        "services_uss_mb": rounded(services_uss),
        "services_pss_mb": rounded(services_pss),
        "per_service_rss_mb": per("services", 0),
        "per_service_uss_mb": per("services", 1),
        "per_service_pss_mb": per("services", 2),
        "broker_rss_mb": per("broker", 0),
        "emulators_rss_mb": per("emulators", 0),
        "floor_bare_python_rss_mb": rounded(python[0]),
        "floor_bare_python_uss_mb": rounded(python[1]),
        "floor_demo_service_rss_mb": rounded(demo[0]),
        "floor_demo_service_uss_mb": rounded(demo[1]),
        "services": count,
        "ratio_vs_bare_python": round(ratio_python, 2),
        "ratio_vs_demo_service": round(ratio_demo, 2),
        "ready_target_s": READY_TARGET_S,
        "services_target_mb": SERVICES_TARGET_MB,
        "ready_target_met": ready_ok,
        "memory_target_met": memory_ok,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
