"""One controller per vial: a vial under an on-device experiment is not silently overridden by another client.

The experiment service publishes retained `experiment/state/ownership` ({"vials": {"9": {"experiment": ...}},
"principal": ...}); this module (no I/O) says whether a command would touch an owned vial. A per-vial list touches
vial v when its element v changes the stored value ("NaN" keeps it); the pump list touches vial v through pumps v,
v + 16 and v + 32 when they are anything but "--" (a pump field acts, it is not a setpoint). Scalars and lists of
other lengths are not per vial. The experiment service's own calls pass: `principal` is its `<principal>/<session>`,
which only it can be (the broker pins the principal; the session lies in that principal's own reply namespace), and
only it may publish `experiment/state/ownership` (the ACL).
"""
from __future__ import annotations

import math
from typing import Any

VIALS = 16
PUMPS = 48


def _keeps(element: Any) -> bool:
    return element is None or element == "NaN" or (isinstance(element, float) and math.isnan(element))


def touched_vials(param: str, value: Any, current: Any) -> list[int]:
    """The vials a command's value would change."""
    if not isinstance(value, list):
        return []
    stored = current if isinstance(current, list) else []
    if param == "pump" and len(value) == PUMPS:
        return sorted({i % VIALS for i, e in enumerate(value) if not _keeps(e) and str(e) != "--"})
    if len(value) != VIALS:
        return []
    return [v for v, e in enumerate(value) if not _keeps(e) and (v >= len(stored) or str(e) != str(stored[v]))]


def refusal(ownership: Any, client: str | None, param: str, value: Any, current: Any) -> tuple[str, dict] | None:
    """(message, detail) when the command would change a vial an experiment owns and the caller is not it."""
    if not isinstance(ownership, dict) or not isinstance(ownership.get("vials"), dict):
        return None
    principal = str(ownership.get("principal") or "")
    if principal and client == principal:
        return None
    owned = {int(k): v for k, v in ownership["vials"].items() if str(k).isdigit() and isinstance(v, dict)}
    clashes = [v for v in touched_vials(param, value, current) if v in owned]
    if not clashes:
        return None
    named = ", ".join(f"vial {v} (experiment '{owned[v].get('experiment')}')" for v in clashes)
    return (f"{param}: {named} {'is' if len(clashes) == 1 else 'are'} run by an on-device experiment; "
            "leave these elements NaN ('--' for pumps) or stop the experiment",
            {"field": "value", "vials": clashes, "experiments": sorted({str(owned[v].get("experiment"))
                                                                         for v in clashes})})
