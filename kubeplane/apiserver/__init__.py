"""The Kubernetes REST API server, one sub-package per room (bottom up; each imports only
the rooms below it, `tests/test_layout.py` checks):

  transport/    HTTP/1.1 on asyncio + httptools, TLS and certificates
  machinery/    the Status error type, codecs, JSONPath
  flowcontrol/  API Priority and Fairness
  registry/     which resources exist, their strategies, storage, patches, apply, selectors, schemas
  cache/        the watch cache
  endpoints/    the REST verbs on one resource, watch, tables, discovery
  server/       request info, authentication, flow control, routing, health, metrics, assembly

The entry point is `server.apiserver` (`ServerConfig`, `serve_forever`).
"""
