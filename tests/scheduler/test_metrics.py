"""The scheduler's metrics endpoint and names (no API server)."""
import asyncio

from kubeplane.scheduler.metrics import Metrics, serve_metrics
from kubeplane.scheduler.scheduler import Scheduler


async def _get(port: int, path: str) -> tuple[int, str]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_health_and_not_found():
    m = Metrics()
    s = Scheduler(api=None, metrics=m)   # binds the queue and cache gauges
    server = await serve_metrics(m, "127.0.0.1", 0, lambda: True)
    port = server.sockets[0].getsockname()[1]
    try:
        code, body = await _get(port, "/metrics")
        assert code == 200
        for line in ('scheduler_pending_pods{queue="active"} 0.0', 'scheduler_pending_pods{queue="gated"} 0.0',
                     'scheduler_scheduler_cache_size{type="nodes"} 0.0'):
            assert line in body
        assert await _get(port, "/healthz") == (200, "ok")
        assert (await _get(port, "/nope"))[0] == 404
    finally:
        server.close()
        await server.wait_closed()
    assert s.queue.counts == {"active": 0, "backoff": 0, "unschedulable": 0}
