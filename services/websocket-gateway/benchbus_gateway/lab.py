"""A lab's central gateway (`lab: true`, docs/lab.md): any device's dashboard and calls through the central broker.

A client names the device it works on: `?device=<id>` on `/ws`, on a Socket.IO connection, on
`POST /api/call/...` and `GET /api/state`. Without it (or with the gateway's own id) everything is as on a device.

A request for device X goes out as `benchbus/X/<service>/cmd/<command>/<our username>` with its reply topic under
`benchbus/X/_client/<our username>/`: the one reply namespace X's fleet bridge carries back up, and only for a lab
user X knows (roles.py LAB_USERS). So the central gateway acts as one lab user (its broker username, pinned by the
central ACL to its lab role) and every device still judges each request by its own ACL: a device where the gateway
is a viewer drops a write (no reply: the caller gets a timeout, nothing runs there).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from benchbus import BusClient, BusError
from benchbus_schemas import topics

if TYPE_CHECKING:
    from benchbus import Service

    from .app import Gateway


def target_device(gateway: Gateway, requested: Any) -> str | None:
    """The other device a client asked for, or None for the gateway's own. Raises BusError naming the field."""
    if requested is None or requested == "" or requested == gateway.device:
        return None
    if not gateway.settings.lab:
        raise BusError("invalid_request", f"field 'device': this gateway serves its own device "
                                          f"'{gateway.device}' only (a lab's central gateway serves every device)")
    if not isinstance(requested, str) or not topics.valid_name(requested) or requested.startswith("_"):
        raise BusError("invalid_request", "field 'device': a device id (one plain topic level) is required")
    seen = devices_seen(gateway)
    if requested not in seen:  # also bounds the reply subscriptions to the devices that exist
        raise BusError("not_found", f"field 'device': '{requested}' has published nothing on the central broker",
                       {"known": sorted(seen)})
    return requested


def devices_seen(gateway: Gateway) -> set[str]:
    """Every device with a retained $state or state on the broker (a device appears when its bridge publishes)."""
    return {name.split("/", 2)[1] for name in list(gateway.retained)}


class DeviceClients:
    """One BusClient per device called, on the service's own connection: each holds that device's reply topic."""

    def __init__(self, service: Service):
        self.service = service
        self._clients: dict[str, BusClient] = {}
        self._lock = threading.Lock()

    def client(self, device: str | None) -> BusClient:
        if device is None or device == self.service.device:
            return self.service.bus
        with self._lock:
            client = self._clients.get(device)
            if client is None:  # subscribes to benchbus/<device>/_client/<us>/<session>/reply (waits for SUBACK)
                client = BusClient(device, name=self.service.bus.name, connection=self.service.connection)
                self._clients[device] = client
            return client

    def call(self, service: str, command: str, payload: Any, timeout: float, on_behalf_of: str | None,
             device: str | None) -> Any:
        """Blocking (on the gateway's call pool): a first call to a device waits for its reply subscription."""
        return self.client(device).call(service, command, payload, timeout, on_behalf_of=on_behalf_of)
