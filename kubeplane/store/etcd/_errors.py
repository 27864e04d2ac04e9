"""Turning etcd's gRPC statuses into ``kubeplane.store.errors`` classes, and deciding
which failures may be retried on another member.

etcd identifies its errors by message text (``api/v3rpc/rpctypes/error.go``); the
status code alone is ambiguous (``OUT_OF_RANGE`` is both "compacted" and "future
revision").  So the message decides first, the code second.
"""

from __future__ import annotations

import asyncio

import grpc

from ..errors import (
    ERRORS_BY_MESSAGE,
    CompactedError,
    RequestTooLargeError,
    StoreError,
    StoreUnavailableError,
)

# Statuses that say "this member cannot serve you now": another member may.
_FAILOVER_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

# Failures that prove a request was never handed to etcd's server logic, so even a
# write may be sent again elsewhere.  gRPC says "failed to connect to all addresses"
# when it found no connection to put the call on; etcd answers "no leader" (with our
# ``hasleader`` metadata) and "not capable" from its interceptor, before the handler.
_NOT_SENT_MARKERS = (
    "failed to connect to all addresses",
    "connection refused",
    "etcdserver: no leader",
    "etcdserver: not capable",
)


def error_from_status(code: grpc.StatusCode | None, details: str | None) -> StoreError:
    """The StoreError for one gRPC status (or etcd watch cancel reason)."""
    details = details or ""
    cls = ERRORS_BY_MESSAGE.get(details)
    if cls is CompactedError:
        return CompactedError(0, details)
    if cls is not None:
        return cls(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        # gRPC's own receive limit (etcd: max-request-bytes + 512 KiB) tripped first.
        return RequestTooLargeError()
    if code in _FAILOVER_CODES:
        return StoreUnavailableError(f"{StoreUnavailableError.message}: {details}".rstrip(": "))
    err = StoreError(details or f"etcdserver: {code}")
    if code is not None:
        err.grpc_code = code.name
    return err


def map_rpc_error(exc: grpc.RpcError) -> StoreError:
    return error_from_status(exc.code(), exc.details())


def may_fail_over(exc: grpc.RpcError, *, idempotent: bool) -> bool:
    """True when the call may be repeated on the next member.

    Idempotent calls (reads, lease keep-alive/TTL, status) retry on any unavailability
    or deadline; writes only when the failure proves the request was not sent.
    """
    code = exc.code()
    if code not in _FAILOVER_CODES:
        return False
    if idempotent:
        return True
    return code == grpc.StatusCode.UNAVAILABLE and not_sent(exc.details())


def not_sent(details: str | None) -> bool:
    text = (details or "").lower()
    return any(marker in text for marker in _NOT_SENT_MARKERS)


async def stream_write(call, message) -> None:
    """``call.write`` that reports a call which already ended as its gRPC status
    (grpc.aio raises a bare InvalidStateError then), so callers see one error kind."""
    try:
        await call.write(message)
    except asyncio.InvalidStateError:
        code = await call.code()
        details = await call.details()
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details) from None
