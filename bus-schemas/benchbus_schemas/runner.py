"""The `runner` service (protocol-runner): the one owner of Opentrons protocol runs on an OT-2-style robot.

It keeps uploaded protocols (Python, Opentrons protocol API v2, with their custom labware JSON) in its data folder,
analyses each at upload with Opentrons' own analysis (a broken protocol is refused with its line and message before
anything moves), and runs one at a time in a child process that holds the smoothie-bridge's motion lease. The same
runs are served over HTTP on the robot-server's port (31950) for the Opentrons App, `ot_api` and PyLabRobot.

Run statuses are the robot-server's: idle, running, paused, stop-requested, stopped, finishing, succeeded, failed.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .envelope import Empty, Payload
from .registry import command, event, state

SERVICE = "runner"

RunStatus = Literal["idle", "running", "paused", "stop-requested", "stopped", "finishing", "succeeded", "failed"]
Id = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")
MAX_PROTOCOL_BYTES = 1_000_000
MAX_LABWARE_FILES = 32


class LabwareFile(Payload):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_. -]{1,128}\.json$", description="the file name, ending .json")
    content: str = Field(..., max_length=MAX_PROTOCOL_BYTES, description="the labware definition (JSON text)")


class UploadRequest(Payload):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "file_name": "protocol.py",
        "source": "metadata = {'apiLevel': '2.13'}\n\ndef run(protocol):\n    protocol.comment('hello')\n"}]})
    file_name: str = Field(..., pattern=r"^[A-Za-z0-9_. -]{1,128}\.py$", description="the protocol's file name")
    source: str = Field(..., min_length=1, max_length=MAX_PROTOCOL_BYTES, description="the protocol (Python)")
    labware: list[LabwareFile] = Field(default_factory=list, max_length=MAX_LABWARE_FILES)


class AnalysisError(Payload):
    error_type: str
    detail: str
    line: int | None = Field(None, description="the protocol's line the error points at, when known")


class Analysis(Payload):
    result: Literal["ok", "not-ok"]
    api_level: str | None = None
    steps: list[str] = Field(default_factory=list, description="what each command will do, in order")
    labware: list[dict[str, Any]] = Field(default_factory=list)
    pipettes: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[AnalysisError] = Field(default_factory=list)


class ProtocolInfo(Payload):
    id: str
    file_name: str
    created_at: str
    labware_files: list[str] = Field(default_factory=list)
    analysis: Analysis


class ProtocolIdRequest(Payload):
    protocol_id: str = Id


class ProtocolList(Payload):
    protocols: list[ProtocolInfo]
    runs: list[RunState]


class CreateRunRequest(Payload):
    protocol_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                    description="the protocol to run; null: a live-command run (commands one by one)")


class RunIdRequest(Payload):
    run_id: str = Id


class RunError(Payload):
    error_type: str
    detail: str
    step: str | None = Field(None, description="the step that was going on")


class RunState(Payload):
    id: str
    protocol_id: str | None = None
    status: RunStatus
    current: bool = Field(..., description="the run that owns the robot now (at most one)")
    live: bool = Field(False, description="a live-command run (no protocol: commands come one by one over HTTP)")
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    current_step: str | None = None
    steps_done: int = 0
    steps_total: int | None = Field(None, description="from the analysis; null for a live-command run")
    progress: float | None = Field(None, ge=0, le=1)
    paused_reason: str | None = None
    errors: list[RunError] = Field(default_factory=list)


class CommandEvent(Payload):
    run_id: str
    index: int = Field(..., ge=0)
    command_type: str
    text: str
    status: Literal["running", "succeeded", "failed"]
    error: str | None = None


class RunEvent(Payload):
    run_id: str
    status: RunStatus
    reason: str | None = None


ProtocolList.model_rebuild()

command(SERVICE, "upload", UploadRequest, ProtocolInfo, "Keep a protocol (and its labware) and analyse it; a protocol "
        "that does not analyse is refused (invalid_request, with its line and message) and not kept.", timeout_s=120)
command(SERVICE, "analyse", ProtocolIdRequest, Analysis, "A kept protocol's analysis.")
command(SERVICE, "create_run", CreateRunRequest, RunState, "Make a run of a protocol (or a live-command run); it "
        "becomes the current run. Refused while another run is active.", timeout_s=30)
command(SERVICE, "play", RunIdRequest, RunState, "Start the run (in its own process, holding the motion lease).",
        timeout_s=30)
command(SERVICE, "pause", RunIdRequest, RunState, "Pause the run (the moving command finishes first).")
command(SERVICE, "resume", RunIdRequest, RunState, "Continue a paused run (after a pause, an open door closed).")
command(SERVICE, "stop", RunIdRequest, RunState, "Stop the run within a second: the robot halted, the lease released.",
        timeout_s=15)
command(SERVICE, "list", Empty, ProtocolList, "The kept protocols and the runs.")
state(SERVICE, "run", RunState, "Retained: the current (or last) run: status, current step, progress.")
event(SERVICE, "command", CommandEvent, "A protocol command started or finished (the run log).")
event(SERVICE, "run", RunEvent, "A run's status changed (with the reason for pauses and failures).")
