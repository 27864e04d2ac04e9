"""kubeplane: a Kubernetes control plane in Python that stays fast at very large scale.

The package follows the request path: ``store`` (MVCC store, etcd client, etcd gRPC
endpoint), later ``apiserver``, ``client``, ``sim`` and ``lab``.
"""

__version__ = "0.1.0"
