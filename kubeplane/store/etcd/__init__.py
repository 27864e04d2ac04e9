"""The etcd client backend: ``EtcdStore`` speaks etcd's v3 gRPC API (grpc.aio).

Point it at a real etcd cluster or at kubeplane's own endpoint
(``kubeplane store serve``); it spreads load over the members and fails over.
"""

from .client import EtcdStore, progress_requests_reliable

__all__ = ["EtcdStore", "progress_requests_reliable"]
