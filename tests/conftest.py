"""Suite-wide scheduling on the workers (the fixtures are benchbus.testing's plugin).

The suite must fit 15 minutes on two cores with four workers, and its wall time is set by its longest tests: the
modules that hold a `slow` test are handed out first, so they run beside the short ones instead of after them
(each module's tests stay together: their module-scoped fixtures are built once)."""
from __future__ import annotations

import pytest


def _slow_modules(items: list[pytest.Item]) -> set[str]:
    return {str(item.path) for item in items if item.get_closest_marker("slow") is not None}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = _slow_modules(items)
    items.sort(key=lambda item: str(item.path) not in slow)  # stable: the order inside each part is kept
    if getattr(config.option, "loadgroup", False):  # set on the workers of --dist loadgroup
        ungrouped = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
        if ungrouped:  # a pytest/xdist pair that drops the group would build the recorder's kept run per worker
            raise pytest.UsageError(f"--dist loadgroup did not group {ungrouped[0]}: check pytest and pytest-xdist")
