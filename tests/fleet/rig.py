"""An emulated rig for the lab tests, run inside a device's network namespace: the real runtime's Service as the
`scheduler` segment, publishing real `event/broadcast` payloads on the device's own broker (as benchbus-scheduler,
ACL-checked) and answering `pause`/`resume` (operator) and `get_config` (viewer). Every broadcast's cycle number is
written to CYCLE_FILE after the publish is handed to the client, so the test knows how many the device made."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from benchbus.service import RequestContext, Service, handler
from benchbus.settings import BrokerSettings, ServiceSettings
from benchbus_schemas.scheduler import GetConfigResult, PauseResult


class RigScheduler(Service[ServiceSettings]):
    segment = "scheduler"
    paused = False

    @handler("pause")
    def pause(self, _request, ctx: RequestContext) -> PauseResult:
        self.paused = True
        print(f"pause by {ctx.principal}, reply to {ctx.response_topic}", flush=True)
        return PauseResult(paused=True)

    @handler("resume")
    def resume(self, _request, _ctx: RequestContext) -> PauseResult:
        self.paused = False
        return PauseResult(paused=False)

    @handler("get_config")
    def get_config(self, _request, _ctx: RequestContext) -> GetConfigResult:
        return GetConfigResult(config={}, source="rig", path="-", paused=self.paused)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--port", type=int, default=1883, help="the device's broker on 127.0.0.1")
    parser.add_argument("--period", type=float, default=0.25)
    parser.add_argument("--cycle-file", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ServiceSettings(device=args.device, broker=BrokerSettings(
        host="127.0.0.1", port=args.port, username="benchbus-scheduler", password=args.password))
    service = RigScheduler(settings)
    cycle = 0

    def broadcast() -> None:
        nonlocal cycle
        cycle += 1
        service.emit("broadcast", {"data": {"od_90": ["0.1"] * 16}, "config": {}, "ip": args.device,
                                   "timestamp": time.time(), "status": {"od_90": "ok"}, "cycle": cycle,
                                   "cycle_s": 0.01, "broadcast_timing": args.period})
        tmp = args.cycle_file.with_suffix(".new")
        tmp.write_text(str(cycle))
        os.replace(tmp, args.cycle_file)

    service.every(args.period, broadcast)
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
