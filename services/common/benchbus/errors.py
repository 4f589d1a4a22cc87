"""The error a handler raises, or a caller receives, with one of the bus's fixed codes."""
from __future__ import annotations

from typing import Any

from benchbus_schemas import ERROR_CODES, ErrorBody


class BusError(Exception):
    def __init__(self, code: str, message: str, detail: Any = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}; expected one of {ERROR_CODES}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, detail=self.detail)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> BusError:
        error_cls = CallTimeout if body.get("code") == "timeout" else cls
        error = error_cls.__new__(error_cls)
        BusError.__init__(error, body.get("code", "internal"), body.get("message", ""), body.get("detail"))
        return error


class CallTimeout(BusError):
    """No reply arrived in time (the service is down, the broker is unreachable, or the handler is slow)."""

    def __init__(self, message: str, detail: Any = None):
        super().__init__("timeout", message, detail)
