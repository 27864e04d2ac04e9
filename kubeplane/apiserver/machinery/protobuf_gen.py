"""Per-message decode and encode functions for the protobuf codec, generated from its plans.

protobuf.py's reference walk goes through upb's Python API: ``ListFields`` per parsed message
on the way in, a nested keyword tree for the message constructor on the way out.  Both cost a
few hundred nanoseconds per field in Python.  This module writes, for each message plan, one
decode function (wire bytes -> JSON value) and one encode function (JSON value -> wire bytes)
with the field dispatch unrolled, compiled with ``compile``/``exec`` when a kind is first used
(no generated source is stored).  They read and write the wire format themselves.

Invariant: a generated function either returns exactly what the reference walk returns for
the same input, or raises :class:`Slow`; the caller then runs the reference walk, which gives
the result or the error upstream gives.  So the fast path covers only the ordinary shapes:

- decode: known fields with their declared wire type, scalars in range (no negative int32 or
  int64, bools 0 or 1), valid UTF-8, each singular message field at most once (protobuf
  merges repeats), map entries written key-then-value, nothing truncated.  Unknown fields,
  packed repeated scalars, ``RawExtension`` holding protobuf and every fault of the bytes go
  to the reference walk (upb's parser).
- encode: values of the JSON types the field takes (``str`` for strings, ``int`` in range for
  integers, ``bool`` for bools, ``list``/``dict`` for repeated fields and maps and messages);
  anything else (a float in an integer field, a bad time, a bad base64 ...) goes to the
  reference walk, which raises the codec's error or converts as upb does.

Fields are written in field-number order, map entries sorted by key with both key and value
written (what ``SerializeToString(deterministic=True)`` and gogo write), non-pointer fields
always (their zero when absent or null).  The JSON of a decoded message has its keys in Go
struct order, absent fields filled in as the reference walk fills them.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import orjson

# Field kinds (the plans' vocabulary; protobuf.py imports them from here).
SCALAR, BYTES, MESSAGE, REP_SCALAR, REP_BYTES, REP_MESSAGE, MAP_SCALAR, MAP_BYTES, MAP_MESSAGE = range(9)


class Slow(Exception):
    """The generated function cannot handle this input: run the reference walk instead."""


_ABSENT = object()  # a message field not (yet) seen on the wire
_LEN = [bytes([n]) for n in range(128)]  # one-byte varints
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_WIRE = {"string": 2, "bytes": 2, "int32": 0, "int64": 0, "bool": 0}


def varint(n: int) -> bytes:
    """An unsigned varint; a negative int64 / int32 as its 64-bit two's complement (10 bytes)."""
    if n < 0:
        n += 1 << 64
    if n < 128:
        return _LEN[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes, p: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte (``first`` >= 0x80) was at p - 1 -> (value, new p)."""
    x = first & 0x7F
    shift = 7
    while True:
        c = buf[p]
        p += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, p
        shift += 7
        if shift > 63:
            raise Slow


def _small(buf: bytes, p: int, end: int, repeated: int, known: set[int]) -> dict[int, Any]:
    """A small message's fields -> {number: int (varint) or bytes (length-delimited)}, the last
    one winning; field ``repeated`` (length-delimited) collects a list; a number not in
    ``known`` is Slow.  Used by the special types."""
    out: dict[int, Any] = {}
    while p < end:
        t = buf[p]
        p += 1
        if t > 127:
            t, p = read_varint(buf, p, t)
        wt = t & 7
        if wt == 0:
            x = buf[p]
            p += 1
            if x > 127:
                x, p = read_varint(buf, p, x)
        elif wt == 2:
            n = buf[p]
            p += 1
            if n > 127:
                n, p = read_varint(buf, p, n)
            q = p + n
            if q > end:
                raise Slow
            x = buf[p:q]
            p = q
        else:
            raise Slow
        num = t >> 3
        if num not in known:
            raise Slow
        if num == repeated:
            if wt != 2:
                raise Slow
            out.setdefault(num, []).append(x)
        else:
            out[num] = x
    if p != end:
        raise Slow
    return out


def cached(fn: Callable[[Any], Any], limit: int = 1024) -> Callable[[Any], Any]:
    """``fn`` (a pure function of one hashable argument) with a small cache, emptied when full:
    creation and managedFields times repeat within a second."""
    cache: dict[Any, Any] = {}

    def call(arg: Any) -> Any:
        out = cache.get(arg)
        if out is None:
            out = fn(arg)
            if len(cache) >= limit:
                cache.clear()
            cache[arg] = out
        return out

    return call


class Memo:
    """Encodings of large sub-messages (a pod's spec) by their input, for objects stamped from
    one template (the pods of a ReplicaSet, a Job...): decode maps the message's bytes to its
    JSON bytes (each hit returns a fresh ``orjson.loads`` copy), encode the JSON value's
    ``orjson.dumps`` bytes to the message's bytes.  Both are pure functions of that key, so a
    hit gives what the generated function gives.  Bounded: the oldest entries go once the
    keys and values pass ``budget`` bytes."""

    MIN = 256  # smaller messages are cheaper to convert than to look up

    def __init__(self, budget: int = 8 << 20) -> None:
        self.d: dict[tuple[int, bytes], bytes] = {}
        self.size = 0
        self.budget = budget
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[int, bytes]) -> bytes | None:
        out = self.d.get(key)
        if out is None:
            self.misses += 1
        else:
            self.hits += 1
        return out

    def clear(self) -> None:
        with self.lock:
            self.d.clear()
            self.size = 0

    def put(self, key: tuple[int, bytes], value: bytes) -> None:
        with self.lock:
            d = self.d
            if key in d:
                return
            d[key] = value
            self.size += len(key[1]) + len(value)
            while self.size > self.budget and d:
                old = next(iter(d))
                self.size -= len(old[1]) + len(d.pop(old))


def _want(value: Any, kind: type, limit: tuple[int, int] | None = None) -> Any:
    if value.__class__ is not kind:
        raise Slow
    if limit is not None and not limit[0] <= value <= limit[1]:
        raise Slow
    return value


class Generator:
    """Compiles decode (``D<n>(buf, p, end)``) and encode (``E<n>(obj, strict)``) functions for
    plans on first use, sharing one namespace so functions of nested messages find each other.

    ``helpers`` gives the special types' conversions (format_time, parse_time, ...) from
    protobuf.py; ``empty_json(plan)`` the JSON of an absent non-pointer struct (a fresh copy);
    ``zero_bytes(plan)`` the encoding of a plan's defaults (what an absent non-pointer struct
    is on the wire)."""

    def __init__(self, helpers: dict[str, Callable[..., Any]], empty_json: Callable[[Any], Any],
                 zero_bytes: Callable[[Any], bytes], memoized: Callable[[Any], set[str]]) -> None:
        self.h = helpers
        self.empty_json = empty_json
        self.zero_bytes = zero_bytes
        self.memoized = memoized  # plan -> names of its fields whose messages go through the Memo
        self.memo = Memo()
        self.ns: dict[str, Any] = {"Slow": Slow, "_A": _ABSENT, "_L": _LEN, "_rv": read_varint, "_vi": varint,
                                   "_small": _small, "_want": _want, "_sorted": sorted, "_dumps": orjson.dumps,
                                   "_I32": _INT32, "_I64": _INT64, "_loads": orjson.loads}
        self.ns.update(helpers)
        self.ns["_memo"] = self.memo
        self.ns["cached"] = cached
        self.ids: dict[str, int] = {}
        self.lock = threading.RLock()

    # -- public ---------------------------------------------------------------------------

    def decoder(self, plan: Any) -> Callable[[bytes, int, int], Any]:
        fn = plan.fast_dec
        if fn is None:
            with self.lock:
                self._compile(plan)
            fn = plan.fast_dec
        return fn

    def encoder(self, plan: Any) -> Callable[[Any, bool], bytearray]:
        fn = plan.fast_enc
        if fn is None:
            with self.lock:
                self._compile(plan)
            fn = plan.fast_enc
        return fn

    # -- compiling ------------------------------------------------------------------------

    def _name(self, plan: Any) -> int:
        i = self.ids.get(plan.full_name)
        if i is None:
            i = self.ids[plan.full_name] = len(self.ids)
        return i

    def _compile(self, plan: Any) -> None:
        """Generate plan's functions (and its memo wrappers).  The messages it refers to get
        stubs that compile them on their first call: a Pod reaches ~150 message types, a
        typical pod uses ~40."""
        if plan.fast_dec is not None:
            return
        i = self._name(plan)
        if plan.special is not None:
            src = [self._special(plan, i)]
        else:
            src = [self._decode_src(plan, i), self._encode_src(plan, i)]
            for f in plan.fields:
                if f.name in self.memoized(plan) and f.kind == MESSAGE and f.plan.special is None:
                    src.append(self._memo_src(self._name(f.plan)))
        for f in plan.fields:
            if f.plan is not None and f.plan.fast_dec is None:
                self._stub(f.plan)
        exec(compile("\n".join(src), f"<protobuf_gen {plan.full_name}>", "exec"), self.ns)
        plan.fast_dec, plan.fast_enc = self.ns[f"D{i}"], self.ns[f"E{i}"]

    def _stub(self, plan: Any) -> None:
        """D<k>/E<k> placeholders that compile the real functions (which replace them in the
        namespace) on first call."""
        k = self._name(plan)
        if f"D{k}" in self.ns:
            return

        def dec(buf: bytes, p: int, end: int) -> Any:
            return self.decoder(plan)(buf, p, end)

        def enc(obj: Any, strict: Any) -> bytearray:
            return self.encoder(plan)(obj, strict)

        self.ns[f"D{k}"], self.ns[f"E{k}"] = dec, enc

    def _const(self, value: Any) -> str:
        name = f"K{len(self.ns)}"
        self.ns[name] = value
        return name

    @staticmethod
    def _numbers(plan: Any) -> dict[str, int]:
        return {f.name: f.number for f in plan.cls.DESCRIPTOR.fields}

    # -- specials -------------------------------------------------------------------------

    def _special(self, plan: Any, i: int) -> str:
        """Decode and encode of the special types, by field number (from the descriptor).  An
        unknown field, or a field with another wire type, is Slow."""
        num = self._numbers(plan)
        sp = plan.special
        if sp in ("Time", "MicroTime"):
            s, n = num["seconds"], num["nanos"]
            fmt = "format_time(x.get(%d, 0))" % s if sp == "Time" else \
                "format_micro_time(x.get(%d, 0), x.get(%d, 0))" % (s, n)
            trunc = "" if sp == "Time" else "\n    nanos = nanos // 1000 * 1000"
            dec = f"""
def DT{i}(b):
    x = _small(b, 0, len(b), 0, {{{s}, {n}}})
    if not x:
        return None
    _want(x.get({s}, 0), int, _I64)
    _want(x.get({n}, 0), int, _I32)
    return {fmt}
DC{i} = cached(DT{i})
def D{i}(buf, p, end):
    return DC{i}(buf[p:end])
def T{i}(v):
    secs, nanos = parse_time(v){trunc}
    _want(secs, int, _I64)
    return {self._const(bytes([s << 3]))} + _vi(secs) + {self._const(bytes([n << 3]))} + _vi(nanos)
C{i} = cached(T{i})
def E{i}(v, strict):
    return C{i}(_want(v, str))
"""
        elif sp == "Quantity":
            s = num["string"]
            dec = f"""
def D{i}(buf, p, end):
    x = _small(buf, p, end, 0, {{{s}}}).get({s}, b"")
    return _want(x, bytes).decode() or "0"
def E{i}(v, strict):
    c = v.__class__
    if c is not str:
        if c is not int and c is not float:
            raise Slow
        v = json_dumps(v)
    x = v.encode()
    return bytearray({self._const(bytes([s << 3 | 2]))} + _vi(len(x)) + x)
"""
        elif sp == "IntOrString":
            t, iv, sv = num["type"], num["intVal"], num["strVal"]
            kt, ki, ks = (self._const(bytes([n << 3 | w])) for n, w in ((t, 0), (iv, 0), (sv, 2)))
            dec = f"""
def D{i}(buf, p, end):
    x = _small(buf, p, end, 0, {{{t}, {iv}, {sv}}})
    s = _want(x.get({sv}, b""), bytes).decode()
    if _want(x.get({t}, 0), int, _I32) == 1:
        return s
    return _want(x.get({iv}, 0), int, _I32)
def E{i}(v, strict):
    if v.__class__ is int:
        _want(v, int, _I32)
        return bytearray({kt} + b"\\x00" + {ki} + _vi(v) + {ks} + b"\\x00")
    x = _want(v, str).encode()
    return bytearray({kt} + b"\\x01" + {ki} + b"\\x00" + {ks} + _vi(len(x)) + x)
"""
        elif sp == "Duration":
            d = num["duration"]
            dec = f"""
def D{i}(buf, p, end):
    return format_duration(_want(_small(buf, p, end, 0, {{{d}}}).get({d}, 0), int, _I64))
def E{i}(v, strict):
    return bytearray({self._const(bytes([d << 3]))} + _vi(_want(parse_duration(_want(v, str)), int, _I64)))
"""
        elif sp in ("RawExtension", "FieldsV1"):
            r = num["raw" if sp == "RawExtension" else "Raw"]
            dec = f"""
def D{i}(buf, p, end):
    x = _small(buf, p, end, 0, {{{r}}}).get({r})
    if x is None:
        return None
    if _want(x, bytes)[:4] == MAGIC:
        raise Slow
    return load_raw(x)
def E{i}(v, strict):
    if v is None:
        raise Slow
    x = _dumps(v)
    return bytearray({self._const(bytes([r << 3 | 2]))} + _vi(len(x)) + x)
"""
        elif sp == "wrapper":
            it = num["items"]
            k = self._const(bytes([it << 3 | 2]))
            dec = f"""
def D{i}(buf, p, end):
    x = _small(buf, p, end, {it}, {{{it}}})
    return [_want(e, bytes).decode() for e in x.get({it}, ())]
def E{i}(v, strict):
    b = bytearray()
    for e in _want(v, list):
        x = _want(e, str).encode()
        b += {k}
        b += _vi(len(x))
        b += x
    return b
"""
        else:
            raise AssertionError(sp)
        return dec

    def _memo_src(self, k: int) -> str:
        """MD<k>/ME<k>: D<k>/E<k> through the Memo (see Memo)."""
        return f"""
def MD{k}(buf, p, q):
    if q - p < {Memo.MIN}:
        return D{k}(buf, p, q)
    key = ({k}, buf[p:q])
    j = _memo.get(key)
    if j is not None:
        return _loads(j)
    v = D{k}(buf, p, q)
    _memo.put(key, _dumps(v))
    return v
def ME{k}(v, strict):
    if strict or v.__class__ is not dict:
        return E{k}(v, strict)
    try:
        key = ({-k - 1}, _dumps(v))
    except Exception:
        return E{k}(v, strict)
    if len(key[1]) < {Memo.MIN}:
        return E{k}(v, strict)
    x = _memo.get(key)
    if x is None:
        x = bytes(E{k}(v, strict))
        _memo.put(key, x)
    return x
"""

    # -- decode ---------------------------------------------------------------------------

    def _decode_src(self, plan: Any, i: int) -> str:
        num = self._numbers(plan)
        fields = plan.fields
        # inline keys must not collide with the parent's (the reference walk's merge order
        # would then matter): such a plan never takes the fast path
        keys: list[str] = []
        for f in fields:
            if f.inline and f.kind == MESSAGE:
                keys += f.plan.json_order
            elif f.json is not None:
                keys.append(f.json)
        if len(keys) != len(set(keys)) or any(f.inline and f.kind != MESSAGE for f in fields):
            return f"def D{i}(buf, p, end):\n    raise Slow\n"
        cases: dict[int, list[str]] = {}
        init = []
        memo = self.memoized(plan)
        for j, f in enumerate(fields):
            v = f"v{j}"
            n = num[f.name]
            sub = f"D{self._name(f.plan)}" if f.plan is not None else None
            if sub is not None and f.name in memo and f.kind == MESSAGE and f.plan.special is None:
                sub = "M" + sub
            ty = f.type_name
            length = ["n = buf[p]", "p += 1", "if n > 127:", "    c = buf[p]", "    p += 1",
                      "    if c > 127:", "        n, p = _rv(buf, p - 1, n)", "    else:",
                      "        n = (n & 127) | c << 7", "q = p + n", "if q > end:", "    raise Slow"]
            if f.kind in (SCALAR, REP_SCALAR):
                init.append(f"{v} = None")
                if ty == "string":
                    read = length + ["x = buf[p:q].decode()", "p = q"]
                elif ty in ("int32", "int64"):
                    top = (1 << 31) - 1 if ty == "int32" else (1 << 63) - 1
                    read = ["x = buf[p]", "p += 1", "if x > 127:", "    x, p = _rv(buf, p, x)",
                            f"    if x > {top}:", "        raise Slow"]
                elif ty == "bool":
                    read = ["x = buf[p]", "p += 1", "if x > 1:", "    raise Slow", "x = x == 1"]
                else:
                    return f"def D{i}(buf, p, end):\n    raise Slow\n"
                wt = _WIRE[ty]
                store = [f"{v} = x"] if f.kind == SCALAR else [f"if {v} is None:", f"    {v} = [x]", "else:",
                                                              f"    {v}.append(x)"]
            elif f.kind in (BYTES, REP_BYTES):
                init.append(f"{v} = None")
                wt = 2
                read = length + ["x = b64(buf[p:q])", "p = q"]
                store = [f"{v} = x"] if f.kind == BYTES else [f"if {v} is None:", f"    {v} = [x]", "else:",
                                                             f"    {v}.append(x)"]
            elif f.kind == MESSAGE:
                init.append(f"{v} = _A")
                wt = 2
                read = [f"if {v} is not _A:", "    raise Slow"] + length + [f"x = {sub}(buf, p, q)", "p = q"]
                store = [f"{v} = x"]
            elif f.kind == REP_MESSAGE:
                init.append(f"{v} = None")
                wt = 2
                read = length + [f"x = {sub}(buf, p, q)", "p = q"]
                store = [f"if {v} is None:", f"    {v} = [x]", "else:", f"    {v}.append(x)"]
            else:  # maps: entries {key = 1: string, value = 2}, written key first
                init.append(f"{v} = None")
                wt = 2
                if f.kind == MAP_SCALAR and ty == "string":
                    val = ["m = buf[p]", "p += 1", "if m > 127:", "    m, p = _rv(buf, p, m)",
                           "x = buf[p:p + m].decode()", "p += m"]
                elif f.kind == MAP_BYTES:
                    val = ["m = buf[p]", "p += 1", "if m > 127:", "    m, p = _rv(buf, p, m)",
                           "x = b64(buf[p:p + m])", "p += m"]
                elif f.kind == MAP_MESSAGE:
                    val = ["m = buf[p]", "p += 1", "if m > 127:", "    m, p = _rv(buf, p, m)",
                           "if p + m > q:", "    raise Slow", f"x = {sub}(buf, p, p + m)", "p += m"]
                else:
                    return f"def D{i}(buf, p, end):\n    raise Slow\n"
                read = length + [
                    "if buf[p] != 10:", "    raise Slow", "m = buf[p + 1]", "p += 2", "if m > 127:",
                    "    m, p = _rv(buf, p, m)", "k = buf[p:p + m].decode()", "p += m",
                    "if p >= q or buf[p] != 18:", "    raise Slow", "p += 1"] + val + [
                    "if p != q:", "    raise Slow"]
                store = [f"if {v} is None:", f"    {v} = {{k: x}}", "else:", f"    {v}[k] = x"]
            cases[n << 3 | wt] = read + store
        body = ["def D%d(buf, p, end):" % i]
        body += ["    " + s for s in init] if init else []
        body += ["    while p < end:", "        t = buf[p]", "        p += 1", "        if t > 127:",
                 "            c = buf[p]", "            p += 1", "            if c > 127:", "                raise Slow",
                 "            t = (t & 127) | c << 7"]
        body += _tree(sorted(cases), cases, 2)
        body += ["    if p != end:", "        raise Slow", "    o = {}"]
        for j, f in enumerate(fields):
            v = f"v{j}"
            if f.inline and f.kind == MESSAGE:
                if f.pointer:
                    body += [f"    if {v} is not _A:", f"        o.update({v})"]
                else:
                    e = self._const(f.plan)
                    body += [f"    o.update({v} if {v} is not _A else empty_json({e}))"]
                continue
            if f.json is None:
                continue
            k = repr(f.json)
            if f.kind == SCALAR:
                if not f.pointer and f.omitempty:
                    body += [f"    if {v}:", f"        o[{k}] = {v}"]
                elif not f.pointer:
                    body += [f"    o[{k}] = {v} if {v} is not None else {f.zero!r}"]
                elif f.omitempty:
                    body += [f"    if {v} is not None:", f"        o[{k}] = {v}"]
                else:
                    body += [f"    o[{k}] = {v}"]
            elif f.kind == MESSAGE:
                if not f.pointer:
                    e = self._const(f.plan)
                    body += [f"    o[{k}] = {v} if {v} is not _A else empty_json({e})"]
                elif f.omitempty:
                    body += [f"    if {v} is not _A:", f"        o[{k}] = {v}"]
                else:
                    body += [f"    o[{k}] = {v} if {v} is not _A else None"]
            else:
                if f.kind in (MAP_SCALAR, MAP_BYTES, MAP_MESSAGE):
                    val = f"{{k: {v}[k] for k in _sorted({v})}}"
                else:
                    val = v
                if f.omitempty:
                    body += [f"    if {v} is not None:", f"        o[{k}] = {val}"]
                else:
                    body += [f"    o[{k}] = {val} if {v} is not None else None"]
        body += ["    return o", ""]
        return "\n".join(body)

    # -- encode ---------------------------------------------------------------------------

    def _encode_src(self, plan: Any, i: int) -> str:
        num = self._numbers(plan)
        known = self._const(frozenset(plan.by_json) | {"kind", "apiVersion"})
        body = [f"def E{i}(o, strict):", "    if o.__class__ is not dict:", "        raise Slow",
                "    if strict:", f"        if strict is True and not {known}.issuperset(o):",
                "            raise Slow", "        strict = True",
                "    b = bytearray()"]
        for f in sorted(plan.fields, key=lambda f: num[f.name]):
            n = num[f.name]
            ty = f.type_name
            if f.inline:
                if f.kind != MESSAGE or f.pointer:
                    return f"def E{i}(o, strict):\n    raise Slow\n"
                tag = self._const(varint(n << 3 | 2))
                body += [f"    x = E{self._name(f.plan)}(o, 2 if strict else False)", f"    b += {tag}",
                         "    n = len(x)", "    b += _L[n] if n < 128 else _vi(n)", "    b += x"]
                continue
            if f.json is None:
                continue
            body += [f"    v = o[{f.json!r}] if {f.json!r} in o else None"]
            if f.kind == SCALAR:
                tag = varint(n << 3 | _WIRE.get(ty, 0))
                w = self._scalar(ty, "v", tag)
                if w is None:
                    return f"def E{i}(o, strict):\n    raise Slow\n"
                if f.pointer:
                    body += ["    if v is not None:"] + ["        " + s for s in w]
                else:
                    zero = self._const(tag + (b"\x00"))
                    body += ["    if v is None:", f"        b += {zero}", "    else:"] + ["        " + s for s in w]
            elif f.kind == BYTES:
                tag = self._const(varint(n << 3 | 2))
                body += ["    if v is not None:", "        x = unb64(v)", f"        b += {tag}",
                         "        b += _vi(len(x))", "        b += x"]
            elif f.kind == MESSAGE:
                tag = self._const(varint(n << 3 | 2))
                fn = f"E{self._name(f.plan)}"
                if f.name in self.memoized(plan) and f.plan.special is None:
                    fn = "M" + fn
                w = [f"x = {fn}(v, strict)", f"b += {tag}",
                     "n = len(x)", "b += _L[n] if n < 128 else _vi(n)", "b += x"]
                if f.pointer:
                    body += ["    if v is not None:"] + ["        " + s for s in w]
                else:
                    z = self.zero_bytes(f.plan)
                    zero = self._const(varint(n << 3 | 2) + varint(len(z)) + z)
                    body += ["    if v is None:", f"        b += {zero}", "    else:"] + ["        " + s for s in w]
            elif f.kind in (REP_SCALAR, REP_BYTES, REP_MESSAGE):
                if f.kind == REP_SCALAR:
                    w = self._scalar(ty, "e", varint(n << 3 | _WIRE.get(ty, 0)))
                    if w is None:
                        return f"def E{i}(o, strict):\n    raise Slow\n"
                elif f.kind == REP_BYTES:
                    tag = self._const(varint(n << 3 | 2))
                    w = ["x = unb64(e)", f"b += {tag}", "b += _vi(len(x))", "b += x"]
                else:
                    tag = self._const(varint(n << 3 | 2))
                    w = [f"x = E{self._name(f.plan)}(e, strict)", f"b += {tag}",
                         "n = len(x)", "b += _L[n] if n < 128 else _vi(n)", "b += x"]
                body += ["    if v is not None:", "        if v.__class__ is not list:", "            raise Slow",
                         "        for e in v:"] + ["            " + s for s in w]
            else:  # maps: sorted by key, key and value always written
                tag = self._const(varint(n << 3 | 2))
                if f.kind == MAP_SCALAR:
                    if ty != "string":
                        return f"def E{i}(o, strict):\n    raise Slow\n"
                    val = ["if e.__class__ is not str:", "    raise Slow", "y = e.encode()"]
                elif f.kind == MAP_BYTES:
                    val = ["y = unb64(e)"]
                else:
                    val = [f"y = E{self._name(f.plan)}(e, strict)"]
                w = ["e = v[k]"] + val + [
                    "if k.__class__ is not str:", "    raise Slow", "x = k.encode()",
                    "n = len(x)", "m = len(y)",
                    "x = b'\\n' + (_L[n] if n < 128 else _vi(n)) + x + b'\\x12' + (_L[m] if m < 128 else _vi(m)) + y",
                    "n = len(x)", f"b += {tag}", "b += _L[n] if n < 128 else _vi(n)", "b += x"]
                body += ["    if v is not None:", "        if v.__class__ is not dict:", "            raise Slow",
                         "        for k in _sorted(v):"] + ["            " + s for s in w]
        body += ["    return b", ""]
        return "\n".join(body)

    def _scalar(self, ty: str, v: str, tag: bytes) -> list[str] | None:
        """Lines that append the tag and scalar ``v`` to b (Slow on a value of another type)."""
        t = self._const(tag)
        if ty == "string":
            return [f"if {v}.__class__ is not str:", "    raise Slow", f"x = {v}.encode()", f"b += {t}",
                    "n = len(x)", "b += _L[n] if n < 128 else _vi(n)", "b += x"]
        if ty in ("int32", "int64"):
            lo, hi = _INT32 if ty == "int32" else _INT64
            return [f"if {v}.__class__ is not int or not {lo} <= {v} <= {hi}:", "    raise Slow", f"b += {t}",
                    f"b += _L[{v}] if 0 <= {v} < 128 else _vi({v})"]
        if ty == "bool":
            return [f"if {v} is True:", f"    b += {t}", "    b += b'\\x01'", f"elif {v} is False:",
                    f"    b += {t}", "    b += b'\\x00'", "else:", "    raise Slow"]
        return None


def _tree(tags: list[int], cases: dict[int, list[str]], depth: int) -> list[str]:
    """A binary search over the sorted tags (few compares per field); no match is Slow."""
    pad = "    " * depth
    if len(tags) <= 3:
        out = []
        for j, t in enumerate(tags):
            out.append(f"{pad}{'if' if j == 0 else 'elif'} t == {t}:")
            out += [pad + "    " + s for s in cases[t]]
        out += [f"{pad}else:" if tags else f"{pad}if True:", f"{pad}    raise Slow"]
        return out
    mid = len(tags) // 2
    return ([f"{pad}if t < {tags[mid]}:"] + _tree(tags[:mid], cases, depth + 1) + [f"{pad}else:"]
            + _tree(tags[mid:], cases, depth + 1))
