"""The embedded MVCC store (etcd v3 semantics, durable, in process).

One concept per module, following etcd's ``server/storage/mvcc``:

* ``key_index``: ordered key index, version chains, visibility at a revision;
* ``history``: revision-ordered change log (watch catch-up, compaction);
* ``kvstore``: the MVCC state machine (reads, txn evaluation, staging);
* ``lease``: the lessor's table;
* ``watch``: synced/catching-up watchers;
* ``wal``, ``snapshot``, ``backend``: durability (framed log, snapshots, recovery);
* ``store``: ``EmbeddedStore``, the asyncio implementation of ``Store``.
"""

from .store import EmbeddedStore

__all__ = ["EmbeddedStore"]
