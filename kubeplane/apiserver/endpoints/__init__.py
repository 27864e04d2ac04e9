"""The REST endpoints (k8s.io/apiserver's endpoints/handlers): one resource's verbs.

    handlers.py      RESTHandlers: routes a resolved request to the verb's module
    common.py        what the verbs share: Route, query parameters, response helpers
    reads.py         GET and LIST (from the watch cache or the store)
    watch.py         WATCH: streams of events, bookmarks, initial events
    writes.py        create, update, patch, apply
    deletes.py       delete, deletecollection, graceful deletion, finalizers
    subresources.py  status, scale, binding, eviction and the other subresources
    checks.py        admission-like checks on incoming objects (schemas, names, CRDs)
    tables.py        Table output (kubectl get's columns)
    discovery.py     /version, /api, /apis and the aggregated discovery documents

Imports `machinery`, `transport`, `registry` and `cache`; never `server`.
"""
