"""The common `main` of every service: arguments, settings (refused with file, line and field), logging, run."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from . import logs
from .service import Service
from .settings import ServiceSettings, default_path, load_settings
from .yamlfile import FileError

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
# Makes the service from its own settings model; returns it and an optional setup run once it is connected (what
# the setup returns is not used).
Build = Callable[[SettingsT], tuple[Service, Callable[[], object] | None]]


def run_service(segment: str, settings_model: type[SettingsT], build: Build[SettingsT],
                argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"benchbus-{segment}", description=f"benchbus {segment} service")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"settings file (default {default_path(segment)} when present)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(settings_model, segment, args.config)
    except FileError as error:
        print(f"benchbus-{segment}: refusing to start, bad settings:\n{error}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_json)
    service, setup = build(settings)
    return service.run(setup)
