"""The lab tests' hosts: network namespaces built and removed by the `lab` fixture (tests/fleet/netlab.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # netlab.py beside the tests (pytest runs with --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).parents[1] / "recorder"))  # the recorder tests' PostgreSQL server
