"""Opentrons' own analysis of a kept protocol (`opentrons analyze`, the robot-server's analysis), run in a child
process: a protocol's module code runs during analysis, so a protocol that loops forever or crashes the
interpreter costs only this process (the runner kills it after `analysis_timeout_s`).

    python -m benchbus_runner.analyse PROTOCOL_DIR     # prints one JSON line: benchbus_schemas.runner.Analysis

PROTOCOL_DIR holds `main.py` and `labware/*.json`; benchbus's own labware is always given too.
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

LINE = re.compile(r"\bline (\d+)")


def input_files(folder: Path) -> list[Path]:
    from benchbus_shared_data import labware_dirs

    own = [path for directory in labware_dirs() for path in sorted(Path(directory).rglob("*.json"))]
    return [folder / "main.py", *sorted((folder / "labware").glob("*.json")), *own]


def run_opentrons_analyze(files: list[Path]) -> tuple[dict[str, Any] | None, str | None]:
    """Opentrons' analysis JSON, or (None, the message) when it refuses the files before analysing (no run())."""
    import click
    from opentrons.cli.analyze import analyze

    with tempfile.TemporaryDirectory(prefix="benchbus-analysis-") as scratch:
        output = Path(scratch) / "analysis.json"
        try:
            analyze.main([*map(str, files), "--json-output", str(output), "--log-level", "ERROR"],
                         standalone_mode=False)
        except SystemExit:
            pass  # analyze ends with sys.exit(its return code); the JSON says what happened
        except click.ClickException as error:
            return None, error.format_message()
        if not output.exists():
            return None, "the analysis produced no result"
        return json.loads(output.read_text()), None


def line_of(text: str) -> int | None:
    """The protocol line an Opentrons error names ('... [line 12]', 'line 12')."""
    found = LINE.findall(text)
    return int(found[-1]) if found else None


def flatten_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each top-level error with the most telling detail of its wrapped errors (the protocol's own exception)."""
    flat = []
    for error in errors:
        detail = error.get("detail") or ""
        inner = error.get("wrappedErrors") or []
        while inner:
            deeper = inner[0]
            if deeper.get("detail"):
                detail = f"{detail}: {deeper['detail']}" if deeper["detail"] not in detail else detail
            inner = deeper.get("wrappedErrors") or []
        flat.append({"error_type": str(error.get("errorType") or "Error"), "detail": detail,
                     "line": line_of(detail)})
    return flat


def step_text(command: dict[str, Any]) -> str:
    params = command.get("params") or {}
    words = [command.get("commandType", "?")]
    for key in ("volume", "labwareId", "wellName", "pipetteName", "loadName", "seconds", "message"):
        if params.get(key) not in (None, ""):
            words.append(f"{key}={params[key]}")
    return " ".join(str(word) for word in words)


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    errors = flatten_errors(raw.get("errors") or [])
    config = raw.get("config") or {}
    version = config.get("apiVersion")
    return {
        "result": "ok" if raw.get("result") == "ok" and not errors else "not-ok",
        "api_level": ".".join(map(str, version)) if isinstance(version, list) else None,
        "steps": [step_text(c) for c in raw.get("commands") or []],
        "labware": [{k: item.get(k) for k in ("id", "loadName", "definitionUri", "location", "displayName")}
                    for item in raw.get("labware") or []],
        "pipettes": [{k: item.get(k) for k in ("id", "pipetteName", "mount")} for item in raw.get("pipettes") or []],
        "errors": errors,
    }


def analyse_folder(folder: Path) -> dict[str, Any]:
    source = (folder / "main.py").read_text(errors="replace")
    try:
        compile(source, "main.py", "exec")  # a syntax error: Opentrons says it too, but without the line
    except SyntaxError as error:
        return {"result": "not-ok", "errors": [{"error_type": "SyntaxError", "line": error.lineno,
                                                "detail": f"{error.msg} (line {error.lineno})"}]}
    raw, refusal = run_opentrons_analyze(input_files(folder))
    if raw is None:
        return {"result": "not-ok", "errors": [{"error_type": "ProtocolFilesInvalid", "detail": refusal or "",
                                                "line": line_of(refusal or "")}]}
    return summarise(raw)


def main(argv: list[str] | None = None) -> int:
    from benchbus_ot2.calibration import private_config_dir

    private_config_dir()  # before opentrons is imported: never ~/.opentrons
    args = sys.argv[1:] if argv is None else argv
    result = analyse_folder(Path(args[0]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")  # the last line is ours (a protocol may print)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
