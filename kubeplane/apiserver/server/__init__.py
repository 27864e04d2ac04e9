"""The server and its filters (k8s.io/apiserver's server package): what happens to a
request before and after its endpoint, and the assembly of the whole.

    app.py         the request path: request info, authentication, flow control,
                   routing to discovery/OpenAPI/endpoints, errors -> Status, metrics, logs
    requestinfo.py verb, resource, namespace, name of a request (upstream's RequestInfo)
    authn.py       tokens, client certificates, impersonation, anonymous access
    filters.py     admission (API Priority and Fairness or max-inflight), deadlines
    apf_config.py  keeps the flow controller equal to the stored FlowSchemas and levels
    health.py      /healthz, /livez, /readyz
    metrics.py     apiserver_* request metrics and /metrics
    apiserver.py   ServerConfig and APIServer: store, registry, caches, app, listeners

The top of the API server: imports every other sub-package, imported by none.
"""
