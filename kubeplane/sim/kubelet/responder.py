"""What a simulated pod does when the kubelet API asks: its logs, the commands it can
exec, and where its ports lead. Everything is data: the Pod object (its annotations)
decides, defaults apply otherwise, and nothing runs a real program unless the pod
explicitly enables it.

Annotations (all optional):

| annotation | meaning | default |
|---|---|---|
| `kubeplane.io/log-lines` | the log text; its lines are emitted in turn, over and over | `<pod> <container> line <i>` |
| `kubeplane.io/log-interval` | seconds between two log lines (float) | `1` |
| `kubeplane.io/exec` | JSON: command line -> `{"stdout": .., "stderr": .., "exitCode": N}` | the built-in commands |
| `kubeplane.io/exec-real-commands` | `"true"`: run exec commands as real processes on this host, if the kubelet allows it (`allow_real_commands`) | off |
| `kubeplane.io/port-forward-<port>` | `host:port` (loopback only) that container port `<port>` forwards to | an echo |

Whoever may create pods may set annotations, so real commands need both: the process
running the kubelet opts in (`KubeletServer(allow_real_commands=True)`, `--allow-real-commands`)
and the pod asks; otherwise the annotation is ignored.

Logs are deterministic: line i of a container is stamped `start + i * interval`, `start`
being the container's `startedAt`, else the pod's `status.startTime`, else its creation
time. A log is as long as the time since `start` allows, but at most `MAX_LOG_LINES` of
it are kept visible (older lines have rotated away), so no request costs more than that.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shlex
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

MAX_LOG_LINES = 10_000
MAX_SLEEP = 3600.0
A_LINES = "kubeplane.io/log-lines"
A_INTERVAL = "kubeplane.io/log-interval"
A_EXEC = "kubeplane.io/exec"
A_REAL = "kubeplane.io/exec-real-commands"
A_FORWARD = "kubeplane.io/port-forward-"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_time(t: float) -> str:
    """The kubelet's log timestamp: RFC 3339 with nine fraction digits, UTC."""
    d = _EPOCH + dt.timedelta(microseconds=round(t * 1e6))
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}000Z"


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    return (pod.get("metadata") or {}).get("annotations") or {}


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
            *(spec.get("ephemeralContainers") or [])]


@dataclass
class LogOptions:
    follow: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: float | None = None        # epoch seconds: sinceSeconds or sinceTime
    limit_bytes: int | None = None


class PodLogs:
    """The log of one container."""

    def __init__(self, pod: dict[str, Any], container: str):
        md = pod.get("metadata") or {}
        ann = _annotations(pod)
        self.name = f"{md.get('name', '')} {container}"
        text = ann.get(A_LINES)
        self.lines = text.splitlines() if text else None
        try:
            self.interval = max(0.01, float(ann.get(A_INTERVAL, "1")))
        except ValueError:
            self.interval = 1.0
        st = pod.get("status") or {}
        started = None
        for cs in st.get("containerStatuses") or []:
            if cs.get("name") == container:
                started = parse_time(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
        self.start = started or parse_time(st.get("startTime")) or parse_time(md.get("creationTimestamp")) or 0.0

    def line(self, i: int) -> str:
        if self.lines:
            return self.lines[i % len(self.lines)]
        return f"{self.name} line {i}"

    def count(self, now: float) -> int:
        """Lines written by `now`."""
        return max(0, int((now - self.start) // self.interval) + 1) if now >= self.start else 0

    def _render(self, i: int, opts: LogOptions) -> bytes:
        text = self.line(i) + "\n"
        if opts.timestamps:
            text = format_time(self.start + i * self.interval) + " " + text
        return text.encode()

    async def stream(self, opts: LogOptions, now: Callable[[], float]) -> AsyncIterator[bytes]:
        """The requested part of the log, then (follow) each new line as its time comes."""
        n = self.count(now())
        first = max(0, n - MAX_LOG_LINES)
        if opts.since is not None:
            first = max(first, int(-(-(opts.since - self.start) // self.interval)))
        if opts.tail_lines is not None:
            first = max(first, n - max(0, opts.tail_lines))
        budget = opts.limit_bytes if opts.limit_bytes is not None and opts.limit_bytes > 0 else None
        i = first
        while True:
            batch = []
            n = self.count(now())
            while i < n and len(batch) < 256:
                batch.append(self._render(i, opts))
                i += 1
            if batch:
                chunk = b"".join(batch)
                if budget is not None:
                    chunk = chunk[:budget]
                    budget -= len(chunk)
                yield chunk
                if budget == 0:
                    return
                continue
            if not opts.follow:
                return
            await asyncio.sleep(max(0.0, self.start + i * self.interval - now()))


@dataclass
class ExecResult:
    exit_code: int | None = 0         # None: the command could not start (`error`)
    error: str = ""


Write = Callable[[bytes], Awaitable[None]]
ReadStdin = Callable[[], Awaitable[bytes]]     # b"" at the end of stdin


async def _read_all(read: ReadStdin, limit: int = 1 << 20) -> bytes:
    out = bytearray()
    while len(out) < limit:
        b = await read()
        if not b:
            break
        out += b
    return bytes(out)


class Exec:
    """Runs a command for one container: the pod's scripted answers first, then (only
    when the pod enables it) a real process, else the built-in commands."""

    def __init__(self, pod: dict[str, Any], container: str, allow_real: bool = False):
        self.pod = pod
        self.container = container
        self.ann = _annotations(pod)
        self.allow_real = allow_real

    def env(self) -> list[str]:
        md = self.pod.get("metadata") or {}
        out = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               f"HOSTNAME={md.get('name', '')}"]
        for c in containers(self.pod):
            if c.get("name") == self.container:
                out += [f"{e['name']}={e.get('value', '')}" for e in c.get("env") or []
                        if isinstance(e, dict) and "name" in e and "valueFrom" not in e]
        return out + ["HOME=/root"]

    async def run(self, argv: list[str], read: ReadStdin | None, out: Write, err: Write) -> ExecResult:
        scripted = self._scripted(argv)
        if scripted is not None:
            if scripted.get("stdout"):
                await out(str(scripted["stdout"]).encode())
            if scripted.get("stderr"):
                await err(str(scripted["stderr"]).encode())
            return ExecResult(int(scripted.get("exitCode", 0)))
        if self.allow_real and self.ann.get(A_REAL) == "true":
            return await self._real(argv, read, out, err)
        return await self._builtin(argv, read, out, err)

    def _scripted(self, argv: list[str]) -> dict[str, Any] | None:
        raw = self.ann.get(A_EXEC)
        if not raw:
            return None
        try:
            table = json.loads(raw)
        except ValueError:
            return None
        hit = table.get(shlex.join(argv)) if isinstance(table, dict) else None
        return hit if isinstance(hit, dict) else None

    async def _real(self, argv: list[str], read: ReadStdin | None, out: Write, err: Write) -> ExecResult:
        try:
            p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            return ExecResult(None, f'exec: "{argv[0]}": {e.strerror}')
        assert p.stdin is not None and p.stdout is not None and p.stderr is not None

        async def feed() -> None:
            try:
                while read is not None and (b := await read()):
                    p.stdin.write(b)
                    await p.stdin.drain()
            except (ConnectionError, BrokenPipeError):
                pass
            finally:
                p.stdin.close()

        async def pump(src: asyncio.StreamReader, dst: Write) -> None:
            while b := await src.read(32 << 10):
                await dst(b)

        feeder = asyncio.ensure_future(feed())
        await asyncio.gather(pump(p.stdout, out), pump(p.stderr, err))
        code = await p.wait()
        feeder.cancel()
        return ExecResult(code if code >= 0 else 128 - code)

    async def _builtin(self, argv: list[str], read: ReadStdin | None, out: Write, err: Write) -> ExecResult:
        if not argv:
            return ExecResult(None, "command must be specified")
        cmd, args = os.path.basename(argv[0]), argv[1:]
        if cmd in ("sh", "bash", "ash", "dash"):
            if len(args) >= 2 and args[0] == "-c":
                try:
                    words = shlex.split(args[1])
                except ValueError as e:
                    await err(f"{cmd}: syntax error: {e}\n".encode())
                    return ExecResult(2)
                if words and words[0] == "exit":
                    try:
                        return ExecResult(int(words[1]) & 0xFF if len(words) > 1 else 0)
                    except ValueError:
                        await err(f"{cmd}: exit: Illegal number: {words[1]}\n".encode())
                        return ExecResult(2)
                if not words:
                    return ExecResult(0)
                r = await self._builtin(words, read, out, err)
                if r.exit_code is None:          # a shell reports "not found" itself, with 127
                    await err(f"{cmd}: 1: {words[0]}: not found\n".encode())
                    return ExecResult(127)
                return r
            # an interactive shell: what `kubectl exec -it -- sh` gets here
            await out(b"kubeplane: simulated container: this shell runs no commands"
                      b" (kubeplane.io/exec-real-commands enables real ones)\n")
            if read is not None:
                await _read_all(read)
            return ExecResult(0)
        if cmd == "echo":
            newline = True
            if args and args[0] == "-n":
                newline, args = False, args[1:]
            await out((" ".join(args) + ("\n" if newline else "")).encode())
            return ExecResult(0)
        if cmd == "true":
            return ExecResult(0)
        if cmd == "false":
            return ExecResult(1)
        if cmd == "cat":
            if args and args != ["-"]:
                await err(f"cat: {args[0]}: No such file or directory\n".encode())
                return ExecResult(1)
            while read is not None and (b := await read()):
                await out(b)
            return ExecResult(0)
        if cmd == "env":
            await out(("\n".join(self.env()) + "\n").encode())
            return ExecResult(0)
        if cmd == "hostname":
            await out(f"{(self.pod.get('metadata') or {}).get('name', '')}\n".encode())
            return ExecResult(0)
        if cmd == "pwd":
            await out(b"/\n")
            return ExecResult(0)
        if cmd == "date":
            await out(dt.datetime.now(dt.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y\n").encode())
            return ExecResult(0)
        if cmd == "sleep":
            try:
                await asyncio.sleep(min(MAX_SLEEP, float(args[0]) if args else 0.0))
            except ValueError:
                await err(f"sleep: invalid time interval '{args[0]}'\n".encode())
                return ExecResult(1)
            return ExecResult(0)
        return ExecResult(None, f'exec: "{argv[0]}": executable file not found in $PATH')


def forward_target(pod: dict[str, Any], port: int) -> tuple[str, int] | None:
    """Where container port `port` leads: the annotation's loopback `host:port`, or None
    for the built-in echo. Raises ValueError for an address that is not loopback."""
    v = _annotations(pod).get(f"{A_FORWARD}{port}")
    if not v:
        return None
    host, _, p = v.rpartition(":")
    host = host.strip("[]")
    if not (host.startswith("127.") or host in ("::1", "localhost")):
        raise ValueError(f"{A_FORWARD}{port}: {v} is not a loopback address")
    return host, int(p)
