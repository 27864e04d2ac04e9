"""Bytes in and out: the HTTP/1.1 server on httptools and asyncio (`http`: requests,
responses, chunked streams, long writes taking turns) and TLS (`certs`: the CA, serving
certificate, client certificates, the admin kubeconfig).

Knows nothing of Kubernetes: no import from the rest of the API server.
"""
