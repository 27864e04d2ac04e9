"""Start one candidate server of ``python -m bench http`` (the benchmark runs this file).

    python bench/http_stacks/serve.py STACK PORT [--cert FILE --key FILE]

STACK is one of ``STACKS``; the server listens on 127.0.0.1:PORT, over TLS with
``--cert``/``--key``, in one process (granian: one worker process under its supervisor),
on uvloop.  The apps are in ``apps.py`` beside this file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import ssl
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STACKS = ("aiohttp", "aiohttp-direct", "uvicorn", "granian-asgi", "granian-rsgi", "raw")
BACKLOG = 8192  # every stack gets the same listen backlog (the kernel caps it at somaxconn)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve_aiohttp(port: int, ctx, direct: bool) -> None:
    from aiohttp import web

    import apps

    runner = web.AppRunner(apps.aiohttp_app(direct), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx, backlog=BACKLOG)
    await site.start()
    await asyncio.Event().wait()


async def serve_raw(port: int, ctx) -> None:
    import apps

    loop = asyncio.get_running_loop()
    server = await loop.create_server(apps.RawHTTP, "127.0.0.1", port, ssl=ctx, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


def serve_uvicorn(port: int, cert: str | None, key: str | None) -> None:
    import uvicorn

    import apps

    config = uvicorn.Config(
        apps.asgi_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
        ws="none", access_log=False, log_level="warning", backlog=BACKLOG,
        ssl_certfile=cert, ssl_keyfile=key,
    )
    uvicorn.Server(config).run()


def serve_granian(port: int, interface: str, cert: str | None, key: str | None) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    target = "apps:asgi_app" if interface == "asgi" else "apps:rsgi_app"
    Server(
        target, address="127.0.0.1", port=port,
        interface=Interfaces.ASGINL if interface == "asgi" else Interfaces.RSGI,
        workers=1, loop=Loops.uvloop, http=HTTPModes.http1, websockets=False,
        backlog=BACKLOG, backpressure=BACKLOG,  # the default backpressure is backlog/workers: 1024
        log_level=LogLevels.warning, working_dir=HERE,
        ssl_cert=Path(cert) if cert else None, ssl_key=Path(key) if key else None,
    ).serve()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stack", choices=STACKS)
    p.add_argument("port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    raise_nofile()
    if a.stack in ("aiohttp", "aiohttp-direct", "raw"):
        import uvloop

        ctx = ssl_context(a.cert, a.key)
        if a.stack == "raw":
            uvloop.run(serve_raw(a.port, ctx))
        else:
            uvloop.run(serve_aiohttp(a.port, ctx, a.stack == "aiohttp-direct"))
    elif a.stack == "uvicorn":
        serve_uvicorn(a.port, a.cert, a.key)
    else:
        serve_granian(a.port, a.stack.split("-")[1], a.cert, a.key)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
