"""Every bus service starts as `benchbus-<service>` and as `python -m <package>` (both print their usage)."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECTS = [p for p in sorted(REPO.glob("services/*/pyproject.toml"))
            if tomllib.loads(p.read_text())["project"].get("entry-points", {}).get("benchbus.up")]


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.parent.name)
def test_console_script_and_python_m(project):
    data = tomllib.loads(project.read_text())["project"]
    script = f"benchbus-{project.parent.name}"
    assert script in data["scripts"], f"{project.parent.name} has no console script {script}"
    package = data["scripts"][script].split(".")[0]
    for argv in ([str(Path(sys.executable).parent / script), "--help"], [sys.executable, "-m", package, "--help"]):
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and "--config" in run.stdout, (argv, run.stdout, run.stderr)
