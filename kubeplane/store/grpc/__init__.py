"""kubeplane's etcd-compatible gRPC endpoint: any ``Store`` over etcd's v3 API.

* ``EtcdServer(store)``: serve a started store in-process (tests, proxies).
* ``serve(...)``: the ``kubeplane store serve`` process around the embedded store.

Modules: ``convert`` (wire <-> store types), ``kv``, ``watch``, ``lease``,
``maintenance`` (also Cluster), ``common`` (headers, errors), ``server``.
"""

from .server import EMULATED_VERSION, EtcdServer, serve

__all__ = ["EMULATED_VERSION", "EtcdServer", "serve"]
