"""A client that floods LISTs as one user (run as its own process by test_fairness.py):

    python flood_client.py PORT PATH SECONDS CONNECTIONS USER

Keeps CONNECTIONS LISTs of PATH in flight for SECONDS, reading and discarding each
body (after a 429 it waits Retry-After seconds, as client-go does), and prints one JSON
line: status counts, the Retry-After values of 429s, and whether every 429 carried the
APF headers."""
from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(port: int, path: str, seconds: float, conns: int, user: str) -> dict:
    counts: dict[str, int] = {}
    retry_after: list[str] = []
    pf_headers = True
    errors = 0
    stop = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns + 1), timeout=timeout) as s:
        async def worker() -> None:
            nonlocal pf_headers, errors
            while time.monotonic() < stop:
                try:
                    async with s.get(f"http://127.0.0.1:{port}{path}", headers={"Impersonate-User": user}) as r:
                        async for _ in r.content.iter_chunked(1 << 20):
                            pass
                        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
                        if r.status == 429:
                            retry_after.append(r.headers.get("Retry-After", ""))
                            if not (r.headers.get("X-Kubernetes-PF-FlowSchema-UID")
                                    and r.headers.get("X-Kubernetes-PF-PriorityLevel-UID")):
                                pf_headers = False
                            ra = r.headers.get("Retry-After", "")
                            await asyncio.sleep(min(int(ra), 32) if ra.isdigit() else 1.0)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
                    await asyncio.sleep(0.1)
        await asyncio.gather(*(worker() for _ in range(conns)))
    return {"counts": counts, "retry_after": retry_after, "pf_headers": pf_headers, "errors": errors}


if __name__ == "__main__":
    port, path, seconds, conns, user = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(int(port), path, float(seconds), int(conns), user))), flush=True)
