"""The storage interface: everything the API server needs from a store, nothing more.

Two implementations exist and one conformance suite (tests/store/conformance) runs
against each of them:

* ``kubeplane.store.mvcc.EmbeddedStore``: the embedded, durable MVCC store (default);
* ``kubeplane.store.etcd.EtcdStore``: a client of etcd's v3 gRPC API, pointed either at
  a real etcd cluster or at kubeplane's own gRPC endpoint (``kubeplane store serve``).

Semantics are etcd v3's (``shared/REFERENCE.md`` section 2): one global revision, +1 per
write txn that changes something; every read is served at one revision; errors are the
classes in ``kubeplane.store.errors``.  Keys and values are ``bytes``.
"""

from __future__ import annotations

import abc
from typing import AsyncIterator, Sequence

from .types import (
    Compare,
    DeleteResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Member,
    Op,
    PutResult,
    RangeOp,
    RangeResult,
    SortOrder,
    SortTarget,
    StoreInfo,
    StoreStatus,
    TxnResult,
    WatchResponse,
)


class Watcher(abc.ABC):
    """A running watch: iterate it for ``WatchResponse`` batches, in revision order.

    * Events with mod_revision >= start_revision (or, with start_revision 0, every
      change after the watch was created) are delivered exactly once, in order.
    * Iteration raises ``CompactedError`` (with ``compact_revision``) when the start
      revision was compacted, or when the watcher fell so far behind that the events it
      still needs were compacted.  ``watch()`` itself never raises it.
    * ``request_progress()`` asks for a progress notification: an empty response whose
      revision is the store's current revision once everything before it was delivered
      (see ``StoreInfo.progress_requests_reliable``).
    * Iteration stops (``StopAsyncIteration``) after ``cancel()`` or store close.
    """

    watch_id: int

    def __aiter__(self) -> AsyncIterator[WatchResponse]:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> WatchResponse: ...

    @abc.abstractmethod
    async def request_progress(self) -> None: ...

    @abc.abstractmethod
    async def cancel(self) -> None: ...

    async def __aenter__(self) -> "Watcher":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.cancel()


class Store(abc.ABC):
    """An etcd-v3-shaped key-value store.  Use ``async with`` or start()/close()."""

    @property
    @abc.abstractmethod
    def info(self) -> StoreInfo:
        """Implementation facts; valid after ``start()``."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> "Store":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- KV -----------------------------------------------------------------------

    @abc.abstractmethod
    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder = SortOrder.NONE,
        sort_target: SortTarget = SortTarget.KEY,
        serializable: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult:
        """Read ``[key, range_end)`` at ``revision`` (0: current).

        Raises CompactedError below the compacted revision, FutureRevisionError above the
        current one.  ``limit`` 0 means no limit; ``count`` ignores it.
        """

    async def get(self, key: bytes, *, revision: int = 0) -> KeyValue | None:
        result = await self.range(key, revision=revision)
        return result.kvs[0] if result.kvs else None

    @abc.abstractmethod
    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResult:
        """Write one key; acknowledged only once durable.  NoSpaceError over quota."""

    @abc.abstractmethod
    async def delete(self, key: bytes, range_end: bytes = b"", *, prev_kv: bool = False) -> DeleteResult:
        """Delete a key or range.  Deleting nothing does not advance the revision."""

    @abc.abstractmethod
    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Atomic If(compares).Then(success).Else(failure).

        At most 128 ops (TooManyOpsError), no key written twice in a branch
        (DuplicateKeyError); either every op applies or none does.
        """

    @abc.abstractmethod
    async def compact(self, revision: int, *, physical: bool = False) -> int:
        """Drop history below ``revision``; returns the header revision.

        CompactedError if already compacted at or past it, FutureRevisionError if it is
        above the current revision.
        """

    # --- Watch --------------------------------------------------------------------

    @abc.abstractmethod
    async def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filter_put: bool = False,
        filter_delete: bool = False,
    ) -> Watcher:
        """Start a watch; see ``Watcher`` for the delivery contract."""

    # --- Leases -------------------------------------------------------------------

    @abc.abstractmethod
    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrant: ...

    @abc.abstractmethod
    async def lease_keep_alive(self, lease_id: int) -> int:
        """Renew once; returns the new TTL.  LeaseNotFoundError if it expired or never was."""

    @abc.abstractmethod
    async def lease_revoke(self, lease_id: int) -> int:
        """Revoke and delete attached keys; returns the header revision."""

    @abc.abstractmethod
    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseInfo: ...

    @abc.abstractmethod
    async def lease_leases(self) -> list[int]: ...

    # --- Maintenance --------------------------------------------------------------

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The latest committed revision (a linearizable read on etcd)."""

    @abc.abstractmethod
    async def status(self) -> StoreStatus: ...

    @abc.abstractmethod
    async def alarms(self) -> list[str]:
        """Active alarms, e.g. ["NOSPACE"]."""

    @abc.abstractmethod
    async def disarm(self) -> None:
        """Clear all alarms (writes are accepted again if space allows)."""

    @abc.abstractmethod
    async def defragment(self) -> None: ...

    @abc.abstractmethod
    def snapshot(self) -> AsyncIterator[bytes]:
        """Stream a point-in-time copy of the whole store (implementation's format)."""

    @abc.abstractmethod
    async def members(self) -> list[Member]: ...

    # --- Observability ------------------------------------------------------------

    def metrics_collector(self):
        """A prometheus_client collector of this store's own metrics under etcd's names
        (``kubeplane.store.metrics``), or None when the store has none to offer: a
        client of a real etcd leaves that to etcd's own /metrics."""
        return None


__all__ = ["Store", "Watcher", "RangeOp"]
