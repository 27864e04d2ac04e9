"""Plain data that crosses the storage interface.

The shapes follow etcd's v3 API (``mvccpb.KeyValue``, ``etcdserverpb`` requests and
responses) so that an embedded store and a remote etcd are interchangeable.  Keys and
values are ``bytes``.  Ranges use etcd's conventions: ``range_end`` empty means the
single key, ``b"\\0"`` means "every key >= key", otherwise the half-open interval
``[key, range_end)``; ``prefix_end(p)`` gives the end of a prefix range.

Classes use ``__slots__`` and hand-written ``__init__`` because the embedded store
creates one ``KeyValue`` per write and range results reuse them without copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Union

ALL_KEYS = b"\0"


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes ``[prefix, end)`` cover every key starting with prefix.

    As etcd's ``clientv3.GetPrefixRangeEnd``: increment the last byte below 0xff,
    dropping trailing 0xff bytes; an all-0xff (or empty) prefix means "to the end".
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return ALL_KEYS


class KeyValue:
    """One version of a key, as etcd's ``mvccpb.KeyValue``.

    ``version`` is 1 on create and +1 per put; a deleted key has no KeyValue (a watch
    DELETE event carries a tombstone: only ``key`` and ``mod_revision`` set).
    Instances are treated as immutable once handed out.
    """

    __slots__ = ("key", "create_revision", "mod_revision", "version", "value", "lease")

    def __init__(
        self,
        key: bytes,
        create_revision: int,
        mod_revision: int,
        version: int,
        value: bytes,
        lease: int = 0,
    ):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease

    def _tuple(self) -> tuple:
        return (self.key, self.create_revision, self.mod_revision, self.version, self.value, self.lease)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyValue):
            return NotImplemented
        return self._tuple() == other._tuple()

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        value = self.value if len(self.value) <= 40 else self.value[:37] + b"..."
        return (
            f"KeyValue({self.key!r}, create={self.create_revision}, mod={self.mod_revision}, "
            f"version={self.version}, value={value!r}, lease={self.lease})"
        )


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareTarget(IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


@dataclass(slots=True)
class Compare:
    """One txn guard, as etcd's ``Compare``.

    A missing key compares as version/create/mod/lease 0 and value b"" is *not*
    matched: etcd evaluates a value compare on a missing key as false.  With
    ``range_end`` the compare must hold for every key in the range.
    """

    key: bytes
    target: CompareTarget
    result: CompareResult
    value: int | bytes
    range_end: bytes = b""

    # Convenience constructors for the common guards.
    @classmethod
    def mod_revision(cls, key: bytes, op: str, rev: int) -> "Compare":
        return cls(key, CompareTarget.MOD, _RESULTS[op], rev)

    @classmethod
    def create_revision(cls, key: bytes, op: str, rev: int) -> "Compare":
        return cls(key, CompareTarget.CREATE, _RESULTS[op], rev)

    @classmethod
    def version(cls, key: bytes, op: str, version: int) -> "Compare":
        return cls(key, CompareTarget.VERSION, _RESULTS[op], version)

    @classmethod
    def value_of(cls, key: bytes, op: str, value: bytes) -> "Compare":
        return cls(key, CompareTarget.VALUE, _RESULTS[op], value)

    @classmethod
    def lease_of(cls, key: bytes, op: str, lease: int) -> "Compare":
        return cls(key, CompareTarget.LEASE, _RESULTS[op], lease)


_RESULTS = {
    "=": CompareResult.EQUAL,
    "==": CompareResult.EQUAL,
    "!=": CompareResult.NOT_EQUAL,
    "<": CompareResult.LESS,
    ">": CompareResult.GREATER,
}


@dataclass(slots=True)
class RangeOp:
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    keys_only: bool = False
    count_only: bool = False
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(slots=True)
class PutOp:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    def validate(self) -> None:
        """etcd's checkPutRequest: the request-level errors, in etcd's order."""
        from .errors import EmptyKeyError, LeaseProvidedError, ValueProvidedError

        if not self.key:
            raise EmptyKeyError()
        if self.ignore_value and self.value:
            raise ValueProvidedError()
        if self.ignore_lease and self.lease:
            raise LeaseProvidedError()


@dataclass(slots=True)
class DeleteOp:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(slots=True)
class TxnOp:
    compares: list[Compare] = field(default_factory=list)
    success: list["Op"] = field(default_factory=list)
    failure: list["Op"] = field(default_factory=list)


Op = Union[RangeOp, PutOp, DeleteOp, TxnOp]


@dataclass(slots=True)
class RangeResult:
    """``revision`` is the store revision the read was served at (etcd's header revision).

    ``count`` is the number of keys in the range (ignoring ``limit``); ``more`` says
    whether ``limit`` cut the result short.
    """

    kvs: list[KeyValue]
    more: bool
    count: int
    revision: int


@dataclass(slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: list[KeyValue] = field(default_factory=list)


@dataclass(slots=True)
class TxnResult:
    """``responses`` holds one RangeResult/PutResult/DeleteResult/TxnResult per op of
    the branch that ran; ``revision`` is the store revision after the txn."""

    succeeded: bool
    responses: list["Result"]
    revision: int


Result = Union[RangeResult, PutResult, DeleteResult, TxnResult]


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


class Event:
    """A watch event.  For DELETE, ``kv`` is a tombstone: key and mod_revision only."""

    __slots__ = ("type", "kv", "prev_kv")

    def __init__(self, type: EventType, kv: KeyValue, prev_kv: KeyValue | None = None):
        self.type = type
        self.kv = kv
        self.prev_kv = prev_kv

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.type, self.kv, self.prev_kv) == (other.type, other.kv, other.prev_kv)

    def __repr__(self) -> str:
        return f"Event({self.type.name}, {self.kv!r}, prev={self.prev_kv!r})"


@dataclass(slots=True)
class WatchResponse:
    """A batch of events, or a progress notification (``events`` empty).

    ``revision`` is the store revision the watcher is known to be caught up to: after
    this response, every event with mod_revision <= revision has been delivered.
    """

    revision: int
    events: list[Event]

    @property
    def is_progress_notify(self) -> bool:
        return not self.events


@dataclass(slots=True)
class LeaseGrant:
    id: int
    ttl: int


@dataclass(slots=True)
class LeaseInfo:
    """``ttl`` is the remaining seconds, -1 when the lease does not exist (as etcd)."""

    id: int
    ttl: int
    granted_ttl: int
    keys: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class StoreStatus:
    version: str
    db_size: int
    db_size_in_use: int
    revision: int
    compact_revision: int
    member_id: int = 0
    leader: int = 0
    raft_term: int = 0
    alarms: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]


@dataclass(slots=True)
class StoreInfo:
    """What a caller may rely on, known once the store has started.

    ``progress_requests_reliable``: a progress notification on a watch guarantees that
    every event up to its revision was already delivered.  False on etcd before
    3.4.31 / 3.5.8; the API server then uses a quorum read for consistent reads.
    """

    implementation: str
    version: str
    progress_requests_reliable: bool
    endpoints: list[str] = field(default_factory=list)
