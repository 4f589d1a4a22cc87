"""The stand-in for the Pi's boot loader in development: what U-Boot's boot script does with our variables.

On the Pi, the boot script (delivered with the deployment) runs before the kernel. This class does the same to
the file-backed environment and then records which slot "booted", with a fresh boot id, where
slots.FileBootSource reads it. The rules (the deployment's boot script must follow them too):

1. `bb_slot` names the slot to boot; if it is missing, boot `bb_good` (else `a`).
2. If `bb_trial` is set: add one to `bb_tries`; if that passes `bb_max_tries` (default 1), the trial has already
   had its chance (the agent never confirmed it): boot `bb_good`, clear `bb_trial`, add the trial slot to
   `bb_invalid`, and save.
3. Never boot a slot listed in `bb_invalid`: boot `bb_good` instead.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from .slots import GOOD, INVALID, MAX_TRIES, SLOT, TRIAL, TRIES, BootEnv, atomic_write, invalid_of, other, slot_named


class DevBootLoader:
    def __init__(self, env: BootEnv, record: Path):
        self.env = env
        self.record = Path(record)

    def boot(self) -> str:
        """One power-on: choose the slot by the rules above, save the environment, record the boot."""
        env = self.env.read()
        good = slot_named(env, GOOD)
        chosen = slot_named(env, SLOT) or good or "a"
        changes: dict[str, str | None] = {}
        trial = slot_named(env, TRIAL)
        if trial is not None:
            tries = int(env.get(TRIES) or 0) + 1 if (env.get(TRIES) or "0").isdigit() else 1
            limit = int(env.get(MAX_TRIES) or 1) if (env.get(MAX_TRIES) or "1").isdigit() else 1
            changes[TRIES] = str(tries)
            if tries > limit:
                chosen = good or other(trial)
                changes.update({SLOT: chosen, TRIAL: None, TRIES: None,
                                INVALID: " ".join(sorted(set(invalid_of(env)) | {trial}))})
        if chosen in invalid_of(env) and good is not None and good != chosen:
            chosen = good
        if changes:
            self.env.update(changes)
        atomic_write(self.record, json.dumps({"slot": chosen, "boot_id": str(uuid.uuid4()),
                                              "booted_at": time.time()}).encode(), mode=0o644)
        return chosen

    def ensure_booted(self) -> None:
        """The first start of a development device: it has booted once."""
        if not self.record.exists():
            self.boot()
