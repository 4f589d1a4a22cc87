"""The dashboard's 24 h of broadcasts: what the gateway's ring costs, and how long the page takes to show it.

24 h at the shipped 20 s cycle is 4320 broadcasts of the real shape (16 vials, raw data, the whole conf, status,
calibrated values).

1. The ring in the gateway. Ours: `BroadcastHistory` keeps each broadcast as the JSON text that came from the bus
   and joins those texts for GET /api/history. Floor: what the gateway first did, a deque of decoded dicts encoded
   again for every request. Memory (tracemalloc) and the time to make the HTTP body.
2. The page. The gateway (real broker, real service) holding 4320 broadcasts; Debian's headless Chromium opens the
   dashboard; ours: until all 16 vial charts hold every point. Floor: fetching /api/history alone (httpx), the
   least any page showing that history must wait.

Run: .venv/bin/python bench/dashboard_history.py [--broadcasts N]. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "shared-data" / "evolver" / "conf.yml"


def broadcast_text(cycle: int, timestamp: float, config: dict) -> str:
    """One broadcast as the scheduler publishes it (values vary per cycle so nothing is shared between them)."""
    vials = range(16)
    body = {
        "data": {
            "od_90": [str(30000 + (cycle * 37 + v * 1013) % 30000) for v in vials],
            "od_135": [str(30000 + (cycle * 53 + v * 917) % 30000) for v in vials],
            "temp": [str(2050 + (cycle + v) % 40) for v in vials],
        },
        "config": config, "ip": "192.0.2.2", "timestamp": timestamp,
        "status": {"od_90": "ok", "od_135": "ok", "od_led": "ok", "temp": "ok", "stir": "ok"}, "errors": {},
        "cycle": cycle, "cycle_s": 2.03 + (cycle % 7) * 0.01, "broadcast_timing": 20.0,
        "calibrated": {"od": [round(0.1 + ((cycle + v) % 90) / 30, 6) for v in vials],
                       "temp": [round(23 + ((cycle + v) % 40) / 10, 6) for v in vials]},
        "calibration": {"od": "example_od_od90", "temp": "example_temp"},
    }
    return json.dumps(body, separators=(",", ":"))


def make_texts(count: int) -> list[str]:
    config = yaml.safe_load(CONF.read_text())["experimental_params"]
    now = time.time()
    return [broadcast_text(i, now - (count - i) * 20.0, config) for i in range(count)]


def measure(fill, render) -> tuple[float, float]:
    """(MB held after filling, median ms of one render)."""
    gc.collect()
    tracemalloc.start()
    held = fill()
    size_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        render(held)
        times.append((time.perf_counter() - start) * 1000)
    return size_mb, statistics.median(times)


def ring(texts: list[str]) -> dict:
    from benchbus_gateway.history import BroadcastHistory

    def ours_fill():
        history = BroadcastHistory(5000, 86400.0)
        for text in texts:
            history.add_raw(text)
        return history

    def floor_fill():
        history: deque = deque(maxlen=5000)
        for text in texts:
            history.append({"received": time.time(), "broadcast": json.loads(text)})
        return history

    ours_mb, ours_ms = measure(ours_fill, lambda h: h.render())
    floor_mb, floor_ms = measure(floor_fill, lambda h: json.dumps({"size": h.maxlen, "broadcasts": list(h)}))
    print(f"ring of {len(texts)} broadcasts   ours: {ours_mb:7.1f} MB, body in {ours_ms:6.1f} ms   "
          f"floor (dicts): {floor_mb:7.1f} MB, body in {floor_ms:6.1f} ms   "
          f"memory ratio {floor_mb / ours_mb:.1f}x, time ratio {floor_ms / ours_ms:.1f}x")
    return {"ring_mb": round(ours_mb, 2), "floor_ring_mb": round(floor_mb, 2), "history_body_ms": round(ours_ms, 1),
            "floor_history_body_ms": round(floor_ms, 1)}


def load_browser_module():
    spec = importlib.util.spec_from_file_location("dashboard_browser", REPO / "tests" / "dashboard" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(texts: list[str]) -> dict:
    from benchbus import BusClient
    from benchbus.testing.broker import MosquittoProcess
    from benchbus_gateway.service import GatewayService
    from benchbus_gateway.settings import GatewaySettings

    browser_module = load_browser_module()
    reason = browser_module.missing()
    if reason:
        print(f"page: not measured ({reason})")
        return {}
    broker = MosquittoProcess()
    broker.start()
    device = "benchdash"
    data_dir = tempfile.mkdtemp(prefix="bench-gateway-")  # the gateway makes its token here
    gateway = GatewayService(GatewaySettings(device=device, broker=broker.settings(), host="127.0.0.1", port=0,
                                             data_dir=data_dir))
    gateway.serve_in_background()
    try:
        with BusClient(device, broker.settings(), name="bench-publisher") as client:
            topic = f"benchbus/{device}/scheduler/event/broadcast"
            for text in texts:
                client.connection.publish(topic, text.encode(), kind="event")
            deadline = time.monotonic() + 60
            while len(gateway.gateway.history) < len(texts) and time.monotonic() < deadline:
                time.sleep(0.05)
        fetches = []
        for _ in range(3):
            start = time.perf_counter()
            body = httpx.get(gateway.url + "api/history", timeout=60).content
            fetches.append(time.perf_counter() - start)
        fetch_s = statistics.median(fetches)
        with tempfile.TemporaryDirectory() as folder:
            browser = browser_module.Browser(Path(folder) / "browser.log")
            try:
                browser.open("about:blank", 1024, 768)  # the browser's own start is not the page's time
                start = time.perf_counter()
                browser.order("goto", url=gateway.url)
                browser.wait("[...document.querySelectorAll('.vial')].every(v => Number(v.dataset.points) >= "
                             f"{len(texts)})", timeout_s=120)
                ready_s = time.perf_counter() - start
                problems = browser.problems()
            finally:
                browser.close()
    finally:
        gateway.stop()
        broker.close()
    print(f"page with {len(texts)} broadcasts ({len(body) / 1e6:.1f} MB of history)   ours: every vial chart drawn "
          f"in {ready_s:.2f} s   floor (GET /api/history alone): {fetch_s:.2f} s   ratio {ready_s / fetch_s:.1f}x"
          + (f"   page problems: {problems}" if problems else ""))
    return {"history_mb": round(len(body) / 1e6, 2), "page_ready_s": round(ready_s, 2),
            "floor_fetch_s": round(fetch_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broadcasts", type=int, default=4320, help="default: 24 h at a 20 s cycle")
    args = parser.parse_args()
    texts = make_texts(args.broadcasts)
    result = {"broadcasts": args.broadcasts, **ring(texts), **page(texts)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
