"""The common `main` of every service: arguments, settings (refused with file, line and field), logging, run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import logs
from .service import Service
from .settings import default_path, load_settings
from .yamlfile import FileError


def run_service(service_class: type[Service[Any]], argv: list[str] | None = None) -> int:
    """Load the class's settings model for its segment, make the service and run it until SIGTERM/SIGINT."""
    segment = service_class.segment
    parser = argparse.ArgumentParser(prog=f"benchbus-{segment}", description=f"benchbus {segment} service")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"settings file (default {default_path(segment)} when present)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(service_class.settings_model, segment, args.config)
    except FileError as error:
        print(f"benchbus-{segment}: refusing to start, bad settings:\n{error}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_json)
    return service_class(settings).run()

