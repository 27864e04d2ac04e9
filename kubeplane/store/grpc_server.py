"""Compatibility entry point: the endpoint lives in ``kubeplane.store.grpc``."""

from .grpc import EMULATED_VERSION, EtcdServer, serve

__all__ = ["EMULATED_VERSION", "EtcdServer", "serve"]
