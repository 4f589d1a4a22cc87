"""The one update session: begin -> file -> validating -> writing -> done -> commit -> ready-for-restart.

No bus and no HTTP here: http.py and service.py call these methods and publish what `on_change` reports. The
stages and messages are the OT-2 update server's (reference §3.2), so its tooling reads them unchanged:

    awaiting-file      "Waiting for update file"
    validating         "Validating update file"     (progress: the SHA-256 of rootfs.ext4, read out of the zip)
    writing            "Writing update to system"   (progress: 0-0.5 the write, 0.5-1 the read-back from the slot)
    done               "Ready to commit update"
    ready-for-restart  "Ready for restart"
    error              the precise reason; `error` holds the short code

The upload goes straight to a file in the downloads folder, chunk by chunk (never held in memory), under a size
limit. A broken upload (the client went away) returns the session to awaiting-file so it can be sent again; a
cancel at any point stops the work at the next chunk and deletes the files (a half-written slot stays marked
invalid in the boot environment). A `begin` wipes the downloads folder, so files an agent that crashed left behind
are cleaned up, and takes over a session that ended in `error` or sat idle past `abandon_after_s`.
"""
from __future__ import annotations

import base64
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable

from . import bundle
from .bundle import BundleError, Cancelled, PublicKey
from .slots import SlotError, SlotSet

log = logging.getLogger("benchbus.update.session")

MESSAGES = {
    "awaiting-file": "Waiting for update file",
    "validating": "Validating update file",
    "writing": "Writing update to system",
    "done": "Ready to commit update",
    "ready-for-restart": "Ready for restart",
}
PROGRESS_STEP = 0.01  # progress is reported in steps of 1 %, not per chunk


class SessionError(Exception):
    """A request the session refuses: `short` is the OT-2 error string, `kind` the bus error code, `status` HTTP."""

    def __init__(self, short: str, message: str, kind: str, status: int):
        super().__init__(message)
        self.short = short
        self.message = message
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class Snapshot:
    token: str | None
    stage: str | None
    progress: float
    message: str
    error: str | None = None
    version: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The status body of the OT-2 update server."""
        if self.stage == "error":
            return {"stage": "error", "error": self.error, "message": self.message}
        body: dict[str, Any] = {"stage": self.stage, "progress": round(self.progress, 4), "message": self.message}
        if self.version is not None:
            body["version"] = self.version
        return body


IDLE = Snapshot(None, None, 0.0, "No update session")


@dataclass
class Config:
    downloads: Path
    key: PublicKey | None
    signature_required: bool
    robot_type: str
    limits: bundle.Limits
    max_upload_bytes: int
    abandon_after_s: float = 600.0
    running_version: Callable[[], dict] = dict  # the running system's VERSION.json (empty when unknown)


class _Session:
    def __init__(self, token: str, folder: Path, force: bool = False):
        self.token = token
        self.folder = folder
        self.force = force  # an admin's explicit consent to a bundle older than the running system
        self.snapshot = Snapshot(token, "awaiting-file", 0.0, MESSAGES["awaiting-file"])
        self.cancelled = threading.Event()
        self.uploading = False
        self.worker: threading.Thread | None = None
        self.target: str | None = None
        self.touched = time.monotonic()


class Updates:
    """The one session. `on_change(snapshot, stage_changed)` runs for every change, in order."""

    def __init__(self, config: Config, slots: SlotSet,
                 on_change: Callable[[Snapshot, bool], None] = lambda s, c: None,
                 can_begin: Callable[[], str | None] = lambda: None,
                 on_commit: Callable[[str], None] = lambda slot: None):
        self.config = config
        self.slots = slots
        self.on_change = on_change
        self.can_begin = can_begin  # a reason to refuse a new session (a trial boot not yet confirmed), or None
        self.on_commit = on_commit
        self.restart_lock = threading.Lock()  # a restart waits for a commit in progress
        self._lock = threading.RLock()
        self._session: _Session | None = None

    # -- reading --------------------------------------------------------------------------------------------

    def current(self) -> Snapshot:
        with self._lock:
            return self._session.snapshot if self._session else IDLE

    def status(self, token: str) -> Snapshot:
        with self._lock:
            return self._find(token).snapshot

    def _find(self, token: str) -> _Session:
        if self._session is None or self._session.token != token:
            raise SessionError("bad-token", f"no update session has the token {token!r}", "not_found", 404)
        return self._session

    # -- begin / cancel -------------------------------------------------------------------------------------

    def begin(self, force: bool = False) -> str:
        """Open the session; `force` lets it install a bundle older than the running system (an admin's call)."""
        with self._lock:
            if self._session is not None and not self._abandoned(self._session):
                raise SessionError("session-already-active", "an update session is already open; cancel it first",
                                   "conflict", 409)
            reason = self.can_begin()
            if reason:
                raise SessionError("trial-pending", reason, "conflict", 409)
            if self._session is not None:
                log.info("taking over the abandoned session %s (%s)", self._session.token, self._session.snapshot.stage)
                self._drop(self._session)
            self._wipe_downloads()
            token = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            folder = self.config.downloads / token
            folder.mkdir(mode=0o700)
            self._session = _Session(token, folder, force)
            self._changed(self._session, stage_changed=True)
            return token

    def _abandoned(self, session: _Session) -> bool:
        if session.snapshot.stage == "error":
            return True
        if session.uploading or (session.worker is not None and session.worker.is_alive()):
            return False
        idle = time.monotonic() - session.touched
        return session.snapshot.stage in ("awaiting-file", "done") and idle > self.config.abandon_after_s

    def _wipe_downloads(self) -> None:
        shutil.rmtree(self.config.downloads, ignore_errors=True)
        self.config.downloads.mkdir(parents=True, mode=0o700, exist_ok=True)

    def cancel(self) -> None:
        with self._lock:
            session = self._session
            if session is None:
                return
            session.cancelled.set()
            if session.snapshot.stage == "ready-for-restart":
                # the commit already pointed the boot loader at the new slot: point it back
                self.slots.roll_back()
            self._session = None
        # outside the lock: the worker takes it to report progress, and stops at its next chunk
        worker = session.worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=60)
        shutil.rmtree(session.folder, ignore_errors=True)
        self.on_change(IDLE, True)

    def forget(self) -> None:
        """A reboot: the session (whatever its stage) is gone, its files too; the boot environment stays as set."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.cancelled.set()
            if session.worker is not None and session.worker is not threading.current_thread():
                session.worker.join(timeout=60)
            shutil.rmtree(session.folder, ignore_errors=True)
            self.on_change(IDLE, True)

    def _drop(self, session: _Session) -> None:
        """An abandoned session (no worker running): its flag set, its files gone."""
        session.cancelled.set()
        shutil.rmtree(session.folder, ignore_errors=True)

    # -- the file -------------------------------------------------------------------------------------------

    def open_upload(self, token: str) -> Upload:
        with self._lock:
            session = self._find(token)
            self._expect_file(session)
            session.uploading = True
            session.touched = time.monotonic()
            return Upload(self, session, session.folder / "bundle.zip", self.config.max_upload_bytes)

    def _expect_file(self, session: _Session) -> None:
        if session.snapshot.stage != "awaiting-file" or session.uploading:
            raise SessionError("file-already-uploaded", f"the session is at {session.snapshot.stage} and "
                               f"{'receiving a file' if session.uploading else 'takes no file now'}", "conflict", 409)

    def use_file(self, token: str, path: Path) -> Snapshot:
        """A bundle already on the device (the bus's `load_file`): checked and written where it lies."""
        with self._lock:
            session = self._find(token)
            self._expect_file(session)
            if not path.is_file():
                raise SessionError("File Missing", f"{path} is not a file", "invalid_request", 400)
            self._start(session, path)
            return session.snapshot

    def _upload_finished(self, session: _Session, path: Path) -> None:
        with self._lock:
            session.uploading = False
            if session is self._session and not session.cancelled.is_set():
                self._start(session, path)

    def _upload_failed(self, session: _Session, path: Path, error: SessionError | None) -> None:
        with self._lock:
            session.uploading = False
            path.unlink(missing_ok=True)
            if session is not self._session or session.cancelled.is_set():
                return
            if error is not None and error.short == "Too Large":
                self._fail(session, error.short, error.message)
            # otherwise (the client went away) the session waits for the file again

    # -- validate and write (a worker thread) ---------------------------------------------------------------

    def _start(self, session: _Session, path: Path) -> None:
        session.target = self.slots.inactive()
        self._set(session, "validating", 0.0)
        session.worker = threading.Thread(target=self._process, args=(session, path), daemon=True,
                                          name=f"update-{session.token[:6]}")
        session.worker.start()

    def _process(self, session: _Session, path: Path) -> None:
        try:
            checked = self._validate(session, path)
            self._write(session, checked)
            self._set(session, "done", 1.0)
        except Cancelled:
            log.info("session %s cancelled during %s", session.token, session.snapshot.stage)
        except (BundleError, SlotError) as error:
            self._fail(session, error.code, error.message)
        except Exception as exc:  # a bug costs this session, never the agent
            log.exception("session %s failed", session.token)
            self._fail(session, "Internal", f"{type(exc).__name__}: {exc}")

    def _validate(self, session: _Session, path: Path) -> bundle.CheckedBundle:
        config = self.config
        checked = bundle.check(path, config.key, config.signature_required, config.robot_type, config.limits)
        refusal = bundle.downgrade_refusal(checked.version, config.running_version())
        if refusal and not session.force:
            raise BundleError("Downgrade", refusal)
        if refusal:
            log.warning("session %s: forced by an admin: %s", session.token, refusal)
        with self._lock:
            session.snapshot = replace(session.snapshot, version=checked.version)
        bundle.verify_hash(checked, progress=self._reporter(session, 0.0, 1.0), cancelled=session.cancelled.is_set)
        return checked

    def _write(self, session: _Session, checked: bundle.CheckedBundle) -> None:
        self._set(session, "writing", 0.0)
        assert session.target is not None, "begin() chose the target"
        writer = self.slots.open_writer(session.target, checked.rootfs_size)
        try:
            written = bundle.stream_rootfs(checked.path, sink=writer.write, progress=self._reporter(session, 0.0, 0.5),
                                           cancelled=session.cancelled.is_set)
            if written != checked.expected_sha256:  # the file changed under us since it was validated
                raise BundleError("Hash Mismatch", f"rootfs.ext4 changed while it was written (SHA-256 {written})")
            writer.finish()
            writer.read_back(checked.expected_sha256, progress=self._reporter(session, 0.5, 0.5),
                             cancelled=session.cancelled.is_set)
        finally:
            writer.close()

    def _reporter(self, session: _Session, start: float, span: float) -> Callable[[int, int], None]:
        last = [-1.0]

        def report(done: int, total: int) -> None:
            value = start + span * (done / total if total else 1.0)
            if value - last[0] >= PROGRESS_STEP or done == total:
                last[0] = value
                with self._lock:
                    if session is self._session and not session.cancelled.is_set():
                        session.snapshot = replace(session.snapshot, progress=min(1.0, value))
                        self._changed(session, stage_changed=False)
        return report

    # -- commit ---------------------------------------------------------------------------------------------

    def commit(self, token: str) -> Snapshot:
        with self.restart_lock, self._lock:
            session = self._find(token)
            if session.snapshot.stage != "done":
                raise SessionError("not-ready", f"the session is at {session.snapshot.stage}; only a session at "
                                   "done can be committed", "conflict", 409)
            assert session.target is not None, "begin() chose the target"
            self.slots.arm_trial(session.target)
            self.on_commit(session.target)
            shutil.rmtree(session.folder, ignore_errors=True)
            self._set(session, "ready-for-restart", 1.0)
            return session.snapshot

    # -- state changes --------------------------------------------------------------------------------------

    def _set(self, session: _Session, stage: str, progress: float) -> None:
        with self._lock:
            if session is not self._session or session.cancelled.is_set():
                raise Cancelled()
            session.snapshot = replace(session.snapshot, stage=stage, progress=progress, message=MESSAGES[stage],
                                       error=None)
            session.touched = time.monotonic()
            self._changed(session, stage_changed=True)

    def _fail(self, session: _Session, code: str, message: str) -> None:
        with self._lock:
            if session is not self._session or session.cancelled.is_set():
                return
            log.warning("session %s: %s: %s", session.token, code, message)
            session.snapshot = replace(session.snapshot, stage="error", error=code, message=message)
            self._changed(session, stage_changed=True)

    def _changed(self, session: _Session, stage_changed: bool) -> None:
        self.on_change(session.snapshot, stage_changed)


class Upload:
    """The upload of one session's file: write chunks as they arrive; `finish()` or `fail()` at the end."""

    def __init__(self, updates: Updates, session: _Session, path: Path, limit: int):
        self.updates = updates
        self.session = session
        self.path = path
        self.limit = limit
        self.received = 0
        self.handle = open(path, "wb")  # noqa: SIM115 - the upload owns it until finish() or fail() closes it

    def write(self, chunk: bytes) -> None:
        if self.session.cancelled.is_set():
            raise SessionError("cancelled", "the session was cancelled during the upload", "conflict", 409)
        self.received += len(chunk)
        if self.received > self.limit:
            raise SessionError("Too Large", f"the upload passed the limit of {self.limit} bytes", "invalid_request",
                               413)
        self.handle.write(chunk)

    def finish(self) -> None:
        self.handle.flush()
        self.handle.close()
        self.updates._upload_finished(self.session, self.path)

    def fail(self, error: SessionError | None = None) -> None:
        self.handle.close()
        self.updates._upload_failed(self.session, self.path, error)
