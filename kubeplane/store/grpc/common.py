"""Pieces every servicer shares: the server's identity, response headers, errors.

etcd fills ``ResponseHeader`` the same way on every response: ``cluster_id``,
``member_id`` and ``raft_term`` identify the answering member, ``revision`` is the
store revision the response was served at.  ``Identity`` holds the first three for the
life of the server (a single-member store never changes term or membership).

Errors: a ``StoreError`` raised by the store becomes a gRPC status with etcd's code and
exact text (``etcdserver: ...``).  Anything else is a bug in kubeplane; it is logged
and answered with ``UNKNOWN`` so a bad request can never take the server down.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import grpc
from etcd3aio._protobuf import rpc_pb2

from ..errors import StoreError

log = logging.getLogger("kubeplane.store.grpc")

# etcd's --max-txn-ops default and --max-request-bytes default.
MAX_TXN_OPS = 128
MAX_REQUEST_BYTES = 1572864
# etcd lets gRPC accept this much more than --max-request-bytes so that an oversize
# request reaches etcd's own check and gets "request is too large" (grpcOverheadBytes).
GRPC_OVERHEAD_BYTES = 512 * 1024


class InvalidSortOptionError(StoreError):
    """An unknown ``RangeRequest.sort_target`` (etcd would crash on it, we refuse it)."""

    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: invalid sort option"


class ServerStoppedError(StoreError):
    """Streams still open when the server shuts down end with this (etcd's ErrGRPCStopped)."""

    grpc_code = "UNAVAILABLE"
    message = "etcdserver: server stopped"


class MalformedRequestError(StoreError):
    """A stream message that does not parse (unary ones are refused by gRPC itself)."""

    grpc_code = "INTERNAL"
    message = "grpc: error unmarshalling request"


class UnsupportedError(StoreError):
    """An etcd RPC that a single-member embedded store has no meaning for."""

    grpc_code = "UNIMPLEMENTED"
    message = "kubeplane: not supported by this store"


def derive_id(*parts: str) -> int:
    """A stable, non-zero 64-bit id from strings (etcd derives its ids from sha1 too)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass
class Identity:
    """Who answers: fixed once the server has started."""

    cluster_id: int
    member_id: int
    raft_term: int
    name: str
    version: str
    client_urls: list[str] = field(default_factory=list)
    peer_urls: list[str] = field(default_factory=list)

    def header(self, revision: int = 0) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=revision,
            raft_term=self.raft_term,
        )

    def fill(self, header: rpc_pb2.ResponseHeader, revision: int = 0) -> None:
        """Set the header fields in place (cheaper than building and copying one)."""
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.revision = revision
        header.raft_term = self.raft_term


def status_code(err: StoreError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.grpc_code, grpc.StatusCode.UNKNOWN)


async def abort(context: grpc.aio.ServicerContext, err: StoreError) -> None:
    """End the RPC with ``err``'s etcd status (raises, as ``context.abort`` does)."""
    await context.abort(status_code(err), err.text)


async def abort_internal(context: grpc.aio.ServicerContext, what: str, exc: BaseException) -> None:
    log.exception("%s failed: %r", what, exc)
    await context.abort(grpc.StatusCode.UNKNOWN, f"kubeplane: internal error in {what}: {exc!r}")


T = TypeVar("T")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]


def unary(method: Handler) -> Handler:
    """Wrap a unary servicer method: StoreError -> etcd status, other errors -> UNKNOWN."""

    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except StoreError as err:
            await abort(context, err)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server
            await abort_internal(context, method.__name__, exc)

    return wrapper


async def until_stopped(requests: AsyncIterator[T], stopping: asyncio.Event) -> AsyncIterator[T]:
    """Yield the client's stream messages until it half-closes; raise
    ``ServerStoppedError`` as soon as ``stopping`` is set (server shutdown), even while
    waiting for the next message.  Use it under ``contextlib.aclosing``."""
    stop = asyncio.ensure_future(stopping.wait())
    nxt: asyncio.Future | None = None
    it = aiter(requests)
    try:
        while True:
            nxt = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait((nxt, stop), return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                raise ServerStoppedError()
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop.cancel()
        if nxt is not None:
            nxt.cancel()
