"""exec and attach: Kubernetes' remote command protocols, over WebSocket or SPDY.

WebSocket (kubectl 1.30+ speaks v5; the server picks the first of v5, v4, v3, v2, v1 the
client offers): every binary message starts with a channel byte, 0 stdin, 1 stdout,
2 stderr, 3 error, 4 resize; in v5 the client ends stdin with the message [255, 0].
SPDY (kubectl 1.29 and older, or when the WebSocket upgrade fails): the protocol is
negotiated by `X-Stream-Protocol-Version` and the client opens one stream per channel
(header `streamType: error|stdin|stdout|stderr|resize`).

On both, the outcome goes on the error channel as the kubelet writes it: v4 and v5 a
metav1.Status JSON (`Success`, or `Failure` with reason `NonZeroExitCode` and an
`ExitCode` cause, which kubectl turns into "command terminated with exit code N" and its
own exit code), older versions a plain message on failure only; then the connection ends.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from . import spdy
from .http import Request, head
from .responder import Exec, ExecResult, LogOptions, PodLogs
from .websocket import WebSocket

WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                "channel.k8s.io")
SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STREAM_WAIT = 30.0           # how long the SPDY side waits for the client's streams


@dataclass
class Options:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    command: list[str]

    @classmethod
    def of(cls, req: Request) -> "Options":
        def flag(name: str) -> bool:
            return (req.param(name) or "").lower() in ("1", "true")
        return cls(flag("input") or flag("stdin"), flag("output") or flag("stdout"),
                   flag("error") or flag("stderr"), flag("tty"), req.query.get("command", []))


def status_message(protocol: str, result: ExecResult, argv: list[str]) -> bytes | None:
    """What goes on the error channel for `result`, None for nothing (old protocols on success)."""
    v4 = protocol.startswith(("v4.", "v5."))
    if result.exit_code is None:
        msg = f"error executing command in container: {result.error}"
        if not v4:
            return msg.encode()
        return json.dumps({"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {msg}",
                           "reason": "InternalError", "details": {"causes": [{"message": msg}]},
                           "code": 500}).encode()
    if result.exit_code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode() if v4 else None
    text = (f"command terminated with non-zero exit code: error executing command "
            f"[{' '.join(argv)}], exit code {result.exit_code}")
    if not v4:
        return text.encode()
    return json.dumps({"metadata": {}, "status": "Failure", "message": text, "reason": "NonZeroExitCode",
                       "details": {"causes": [{"reason": "ExitCode", "message": str(result.exit_code)}]}}).encode()


Run = Callable[[Callable[[], Awaitable[bytes]] | None, Callable[[bytes], Awaitable[None]],
                Callable[[bytes], Awaitable[None]]], Awaitable[ExecResult]]


def exec_runner(pod: dict[str, Any], container: str, opts: Options, allow_real: bool = False) -> Run:
    ex = Exec(pod, container, allow_real)
    return lambda read, out, err: ex.run(opts.command, read, out, err)


def attach_runner(pod: dict[str, Any], container: str, opts: Options) -> Run:
    """The container's main process, simulated: its log lines as they come on stdout
    (no history), and, when the container has `stdin: true`, what the client types
    echoed back. It runs until the client goes away."""
    logs = PodLogs(pod, container)
    spec = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == container), {})
    echo = bool(spec.get("stdin"))

    async def run(read, out, err) -> ExecResult:
        loop = asyncio.get_running_loop()

        async def follow() -> None:
            async for chunk in logs.stream(LogOptions(follow=True, tail_lines=0), time.time):
                await out(chunk)

        async def typed() -> None:
            while read is not None and (b := await read()):
                if echo:
                    await out(b)

        tasks = [loop.create_task(follow())]
        if read is not None:
            tasks.append(loop.create_task(typed()))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
        return ExecResult(0)
    return run


# --- WebSocket ---------------------------------------------------------------------------

async def serve_websocket(req: Request, opts: Options, run: Run) -> None:
    ws = await WebSocket.accept(req, WS_PROTOCOLS)
    if ws is None:
        return
    proto = ws.subprotocol or "channel.k8s.io"
    stdin: asyncio.Queue[bytes] = asyncio.Queue(16)
    gone = asyncio.Event()

    async def reader() -> None:
        try:
            while (msg := await ws.recv()) is not None:
                if not msg:
                    continue
                ch, data = msg[0], msg[1:]
                if ch == STDIN and data:
                    await stdin.put(data)
                elif ch == CLOSE and data[:1] == bytes([STDIN]):
                    await stdin.put(b"")
        finally:
            gone.set()
            if not stdin.full():
                stdin.put_nowait(b"")

    async def read() -> bytes:
        return await stdin.get()

    def writer(ch: int) -> Callable[[bytes], Awaitable[None]]:
        async def w(data: bytes) -> None:
            if data:
                await ws.send(bytes([ch]) + data)
        return w

    rtask = asyncio.get_running_loop().create_task(reader())
    if opts.stdout:               # an empty message on the lowest writable channel: "ready"
        await ws.send(bytes([STDOUT]))
    elif opts.stderr:
        await ws.send(bytes([STDERR]))
    out = writer(STDOUT) if opts.stdout else _discard
    err = (out if opts.tty else writer(STDERR)) if opts.stderr else _discard
    work = asyncio.ensure_future(run(read if opts.stdin else None, out, err))
    ended = asyncio.ensure_future(gone.wait())
    await asyncio.wait([work, ended], return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    if work.done() and not work.cancelled():
        msg = status_message(proto, work.result(), opts.command)
        if msg:
            await ws.send(bytes([ERROR]) + msg)
    else:                          # the client went away: stop the command
        work.cancel()
    await ws.close()
    rtask.cancel()


async def _discard(_: bytes) -> None:
    return None


# --- SPDY ----------------------------------------------------------------------------------

def negotiate(req: Request, supported: tuple[str, ...]) -> str | None:
    offered = req.values("X-Stream-Protocol-Version")
    return next((p for p in offered if p in supported), None)


async def serve_spdy(req: Request, opts: Options, run: Run) -> None:
    proto = negotiate(req, SPDY_PROTOCOLS)
    w = req.writer
    if proto is None:
        offered = req.values("X-Stream-Protocol-Version")
        body = f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports {list(SPDY_PROTOCOLS)}".encode()
        w.write(head(403, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                           ("Connection", "close")]) + body)
        await w.drain()
        return
    w.write(head(101, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", proto)]))
    streams: dict[str, spdy.Stream] = {}
    arrived = asyncio.Event()
    want = {"error"} | ({"stdin"} if opts.stdin else set()) | ({"stdout"} if opts.stdout else set()) | \
        ({"stderr"} if opts.stderr and not opts.tty else set()) | \
        ({"resize"} if opts.tty and proto != "channel.k8s.io" and proto != "v2.channel.k8s.io" else set())

    def on_stream(s: spdy.Stream) -> None:
        streams[s.header("streamType")] = s
        if want <= set(streams):
            arrived.set()

    session = spdy.Session(w.write, on_stream, w.drain)
    closed = asyncio.Event()

    async def pump() -> None:
        try:
            while data := await req.reader.read(64 << 10):
                await session.feed(data)
        except (ConnectionError, spdy.ProtocolError):
            pass
        finally:
            closed.set()
            session.close()

    ptask = asyncio.get_running_loop().create_task(pump())
    try:
        await asyncio.wait_for(arrived.wait(), STREAM_WAIT)
    except asyncio.TimeoutError:
        session.close()
        w.close()
        ptask.cancel()
        return

    async def read() -> bytes:
        return await streams["stdin"].read()

    def writer(name: str) -> Callable[[bytes], Awaitable[None]]:
        s = streams[name]

        async def wr(data: bytes) -> None:
            s.write(data)
            await w.drain()
        return wr

    out = writer("stdout") if opts.stdout else _discard
    err = (out if opts.tty else writer("stderr")) if opts.stderr else _discard
    work = asyncio.ensure_future(run(read if opts.stdin else None, out, err))
    ended = asyncio.ensure_future(closed.wait())
    await asyncio.wait([work, ended], return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    if work.done() and not work.cancelled():
        msg = status_message(proto, work.result(), opts.command)
        if msg:
            streams["error"].write(msg)
    else:
        work.cancel()
    for s in streams.values():
        s.close()
    session.close()
    try:
        await w.drain()
    except ConnectionError:
        pass
    w.close()
    ptask.cancel()
