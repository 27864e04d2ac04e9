"""Storage: one interface (``interface.Store``), two implementations.

* ``kubeplane.store.mvcc``: embedded MVCC store, durable, the default.
* ``kubeplane.store.etcd``: client of etcd's v3 gRPC API (real etcd, or kubeplane's
  own endpoint served by ``kubeplane.store.grpc_server``).
"""

from .errors import *  # noqa: F401,F403
from .interface import Store, Watcher  # noqa: F401
from .types import *  # noqa: F401,F403
