"""Store errors, one class per etcd error, with etcd's gRPC codes and messages.

Every implementation of the storage interface raises these, so callers never see
an implementation-specific exception.  The gRPC server turns them into gRPC status
codes with exactly etcd's text (``etcdserver: ...``); the etcd client turns etcd's
statuses back into these classes by matching the message.  The messages are the
ones in etcd's ``api/v3rpc/rpctypes/error.go``.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class.  ``grpc_code`` is the name of a ``grpc.StatusCode`` member."""

    grpc_code = "UNKNOWN"
    message = "etcdserver: unknown error"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.message)

    @property
    def text(self) -> str:
        return str(self.args[0])


class EmptyKeyError(StoreError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: key is not provided"


class KeyNotFoundError(StoreError):
    """Put with ignore_value/ignore_lease on a key that does not exist."""

    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: key not found"


class ValueProvidedError(StoreError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: value is provided"


class LeaseProvidedError(StoreError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: lease is provided"


class TooManyOpsError(StoreError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: too many operations in txn request"


class DuplicateKeyError(StoreError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: duplicate key given in txn request"


class RequestTooLargeError(StoreError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: request is too large"


class CompactedError(StoreError):
    """A read or watch asked for a revision below the compacted one.

    ``compact_revision`` is the oldest revision still readable (0 when the
    implementation cannot tell, e.g. a plain range error from etcd).
    """

    grpc_code = "OUT_OF_RANGE"
    message = "etcdserver: mvcc: required revision has been compacted"

    def __init__(self, compact_revision: int = 0, message: str | None = None):
        super().__init__(message)
        self.compact_revision = compact_revision


class FutureRevisionError(StoreError):
    grpc_code = "OUT_OF_RANGE"
    message = "etcdserver: mvcc: required revision is a future revision"


class NoSpaceError(StoreError):
    grpc_code = "RESOURCE_EXHAUSTED"
    message = "etcdserver: mvcc: database space exceeded"


class LeaseNotFoundError(StoreError):
    grpc_code = "NOT_FOUND"
    message = "etcdserver: requested lease not found"


class LeaseExistsError(StoreError):
    grpc_code = "FAILED_PRECONDITION"
    message = "etcdserver: lease already exists"


class LeaseTTLTooLargeError(StoreError):
    grpc_code = "OUT_OF_RANGE"
    message = "etcdserver: too large lease TTL"


class TooManyRequestsError(StoreError):
    grpc_code = "RESOURCE_EXHAUSTED"
    message = "etcdserver: too many requests"


class InvalidWatchRangeError(StoreError):
    """A watch whose range_end sorts before its key (etcd: 'watcher range is empty')."""

    grpc_code = "INVALID_ARGUMENT"
    message = "mvcc: watcher range is empty"


class StoreUnavailableError(StoreError):
    """No member answered (all endpoints down, or the store is closed)."""

    grpc_code = "UNAVAILABLE"
    message = "etcdserver: no store available"


class CorruptionError(StoreError):
    """The durable state on disk is damaged beyond a torn final record."""

    grpc_code = "DATA_LOSS"
    message = "kubeplane: store data is corrupt"


# Lookup from etcd's message text to our class, for clients of a real etcd.
ERRORS_BY_MESSAGE: dict[str, type[StoreError]] = {
    cls.message: cls
    for cls in (
        EmptyKeyError,
        KeyNotFoundError,
        ValueProvidedError,
        LeaseProvidedError,
        TooManyOpsError,
        DuplicateKeyError,
        RequestTooLargeError,
        CompactedError,
        FutureRevisionError,
        NoSpaceError,
        LeaseNotFoundError,
        LeaseExistsError,
        LeaseTTLTooLargeError,
        TooManyRequestsError,
        InvalidWatchRangeError,
    )
}
