"""The `benchbus` command line as a user runs it: the console script of this virtual environment, as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHBUS = Path(sys.executable).with_name("benchbus")


def cli_environment(stacks_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A user's shell: no benchbus settings of the test session, and a stacks folder of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCHBUS_", "PYTEST"))}
    env["BENCHBUS_STACKS_DIR"] = str(stacks_dir)
    env.update(extra or {})
    return env


@pytest.fixture
def stacks_dir(tmp_path: Path) -> Path:
    return tmp_path / "stacks"


@pytest.fixture
def cli(broker, device, stacks_dir, tmp_path):
    """cli(*args, bus=True): run `benchbus ARGS` (with --broker and --device of the test unless bus=False)."""
    def run(*args: str, bus: bool = True, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 30.0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(BENCHBUS), *args]
        if bus:
            argv += ["--broker", f"{broker.host}:{broker.port}", "--device", device]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd or tmp_path,
                              env=cli_environment(stacks_dir, env), input=stdin)
    return run


@pytest.fixture
def user_shell(stacks_dir):
    """user_shell(extra) -> the environment of a user's shell with this virtual environment's bin on PATH."""
    def make(extra: dict[str, str] | None = None) -> dict[str, str]:
        env = cli_environment(stacks_dir, extra)
        env["PATH"] = f"{BENCHBUS.parent}:{env.get('PATH', '')}"
        return env
    return make
