"""The client's exceptions."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer from the API server (or an ERROR event in a watch), with the
    Status it carried: `status` (HTTP code), `reason` ("NotFound", "Conflict",
    "Expired", ...), `message`, and the whole decoded `body`."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None,
                 retry_after_header: float | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}
        self.retry_after_header = retry_after_header

    @classmethod
    def from_status(cls, code: int, body: Any) -> "ApiError":
        if isinstance(body, dict) and body.get("kind") == "Status":
            return cls(int(body.get("code") or code), body.get("reason") or "", body.get("message") or "", body)
        text = body if isinstance(body, str) else ""
        return cls(code, "", text[:500] or f"HTTP {code}", {})

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait: the Retry-After header, else the Status' retryAfterSeconds."""
        if self.retry_after_header is not None:
            return self.retry_after_header
        d = self.body.get("details") or {}
        v = d.get("retryAfterSeconds")
        return float(v) if isinstance(v, (int, float)) else None


class ApiConnectionError(ConnectionError):
    """No answer: every try to reach a server failed (refused, reset, timed out)."""
