"""The kubelet's HTTP API as hollow nodes serve it: logs, exec, attach, port-forward and
the node endpoints nodes/proxy reaches, answered by a data-driven responder
(docs/kubelet-api.md).

    server.py         KubeletServer: listeners, nodes and pods, routing
    http.py           a small HTTP/1.1 server on asyncio streams (upgrades, streamed bodies)
    responder.py      what a pod answers: synthetic logs, exec commands, port targets
    remotecommand.py  exec/attach over WebSocket (v1-v5 channel protocols) and SPDY
    portforward.py    portforward.k8s.io over SPDY, plain or tunneled in WebSocket
    spdy.py           SPDY/3.1 framing and the server side of a session
    websocket.py      a server-side WebSocket (the websockets library's sans-I/O protocol)
    tls.py            the self-signed serving certificate
"""
from .server import KubeletServer

__all__ = ["KubeletServer"]
