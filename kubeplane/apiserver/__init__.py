"""The Kubernetes REST API server: HTTP in, REST handlers, registry, storage interface out.

Request path (one module per room):
  http.py       raw asyncio + httptools server (HTTPS or plain HTTP), chunked streams
  app.py        authentication, routing, error -> Status
  discovery.py  /version, /api, /apis (legacy and aggregated), per group-version lists
  handlers.py   the REST verbs on one resource
  registry.py   which resources exist (built-in table + CRDs), per-resource strategy
  storage.py    objects in the store: keys, resourceVersion, optimistic concurrency
  schema/       kubernetes-validate schemas: validation, defaults, OpenAPI documents
  patch.py, fieldmanager.py   patches and server-side apply
  selectors.py, tables.py     label/field selectors and Table output
"""
