"""Fixtures of the gateway's tests: the gateway served in-process on a free port, with a token."""
from __future__ import annotations

import pytest

from benchbus_gateway.service import build
from benchbus_gateway.settings import GatewaySettings

TOKEN = "test-token-0123456789"


@pytest.fixture
def gateway(serve, make_settings):
    """start(**settings) -> the running GatewayService; `.url` is http://localhost:<port>/."""
    def start(**fields):
        fields.setdefault("host", "127.0.0.1")
        fields.setdefault("port", 0)
        fields.setdefault("token", TOKEN)
        return serve(build, make_settings(GatewaySettings, **fields))
    return start
