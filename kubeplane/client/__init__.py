"""kubeplane.client: an async Kubernetes client with informers (docs/client.md).

It talks to any Kubernetes API server over HTTP(S) and imports nothing from the rest of
kubeplane. Objects are plain JSON-shaped dicts.
"""
from __future__ import annotations

from .config import Config, ConfigError, load_kubeconfig
from .errors import ApiConnectionError, ApiError
from .events import EventRecorder
from .indexer import Indexer, label_index, namespace_index, node_name_index
from .informer import DeletedFinalStateUnknown, Informer, SharedInformerFactory
from .leaderelection import LeaderElector
from .ratelimit import Backoff, TokenBucket
from .reflector import Reflector
from .resources import (
    CONFIGMAPS, CRON_JOBS, CSI_NODES, DAEMON_SETS, DEPLOYMENTS, ENDPOINT_SLICES, ENDPOINTS, EVENTS, EVENTS_V1, JOBS,
    LEASES, NAMESPACES, NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, POD_DISRUPTION_BUDGETS, PODS,
    PRIORITY_CLASSES, REPLICA_SETS, SECRETS, SERVICE_ACCOUNTS, SERVICES, STATEFUL_SETS, STORAGE_CLASSES, Resource,
    meta_key, split_key,
)
from .rest import Client
from .transform import chain, intern_strings, strip, strip_and_intern, strip_managed_fields
from .workqueue import QueueShutDown, RateLimitingQueue

__all__ = [
    "Config", "ConfigError", "load_kubeconfig", "Client", "ApiError", "ApiConnectionError", "Resource",
    "meta_key", "split_key", "Indexer", "namespace_index", "node_name_index", "label_index",
    "Informer", "SharedInformerFactory", "DeletedFinalStateUnknown", "Reflector", "TokenBucket", "Backoff",
    "strip_managed_fields", "strip", "chain", "intern_strings", "strip_and_intern", "RateLimitingQueue", "QueueShutDown", "LeaderElector", "EventRecorder",
    "PODS", "NODES", "NAMESPACES", "EVENTS", "LEASES", "PRIORITY_CLASSES", "SERVICES", "CONFIGMAPS", "SECRETS",
    "PERSISTENT_VOLUME_CLAIMS", "PERSISTENT_VOLUMES", "SERVICE_ACCOUNTS", "ENDPOINTS", "DEPLOYMENTS",
    "REPLICA_SETS", "STATEFUL_SETS", "DAEMON_SETS", "JOBS", "CRON_JOBS", "ENDPOINT_SLICES", "EVENTS_V1",
    "POD_DISRUPTION_BUDGETS", "STORAGE_CLASSES", "CSI_NODES",
]
