"""The protobuf codec's per-object cost, side by side with orjson, for the ~2.3 KB bench pod.

    python -m bench protobuf [--rounds 15] [--batch 2000]

The pod is read_bench's 2.3 KB pod (the one the API benchmarks create) made upstream-shaped
by one protobuf round trip (the zero fields upstream always writes added, as a server would
store it).  Both codecs run on that same object:

- decode: body bytes -> JSON-shaped dict (``orjson.loads`` vs ``protobuf.decode``, envelope
  and all);
- encode: dict -> body bytes (``orjson.dumps`` vs ``protobuf.encode``);
- and, for protobuf, the share of the C parser/serializer alone (upb ``ParseFromString`` /
  ``SerializeToString`` of the message), the rest being the Python walk between dict and message.

The codec memoizes a kind's spec by its bytes / JSON (protobuf_gen.Memo: pods stamped from
one template share it).  "protobuf" is the steady state for such pods (the spec a memo hit);
"no memo hit" empties the memo before each call (a spec never seen: the generated functions
plus the memo's lookup and store); "reference walk" is the codec's fallback (upb's Python API:
ListFields / constructor keywords), what every call paid before the generated functions.

Each figure is the median over ``--rounds`` of the mean per object in a batch of ``--batch``,
in this thread's CPU time (``time.thread_time``): the development machine's 2 cores are shared,
and wall-clock figures there swing by 2-3x with the neighbours' load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import orjson


def _per_object(fn: Callable[[], Any], batch: int, rounds: int) -> float:
    """Median over rounds of the mean CPU microseconds per call in a batch."""
    samples = []
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(batch):
            fn()
        samples.append((time.thread_time() - t0) / batch * 1e6)
    return statistics.median(samples)


def bench_pod() -> dict[str, Any]:
    """The bench pod as a server would hold it (uid, resourceVersion, creationTimestamp, status)."""
    from kubeplane.apiserver.machinery import protobuf as pb

    from .read_bench import _pod_json

    pod = json.loads(_pod_json())
    pod["metadata"].update(name="bench-pod-0", namespace="bench", uid="2b7e1c3e-5d0f-4b53-9c51-6b0b6a1f2a11",
                           resourceVersion="123456", creationTimestamp="2026-12-07T13:41:53Z")
    pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    return pb.decode(pb.encode(pod))[2]


def run(rounds: int, batch: int) -> dict[str, float]:
    from kubeplane.apiserver.machinery import protobuf as pb

    pod = bench_pod()
    json_body = orjson.dumps(pod)
    pb_body = pb.encode(pod)
    assert pb.decode(pb_body)[2] == pod == orjson.loads(json_body)
    cls = pb.message_class("v1", "Pod")
    msg = cls.FromString(pb._unwrap(pb_body)[2])
    plan = pb._plan_for("v1", "Pod")
    memo = pb.generator().memo
    raw = pb._unwrap(pb_body)[2]

    def decode_miss() -> Any:
        memo.clear()
        return pb.decode(pb_body)

    def encode_miss() -> Any:
        memo.clear()
        return pb.encode(pod)

    figures = {
        "json_bytes": len(json_body),
        "protobuf_bytes": len(pb_body),
        "json_decode_us": _per_object(lambda: orjson.loads(json_body), batch, rounds),
        "protobuf_decode_us": _per_object(lambda: pb.decode(pb_body), batch, rounds),
        "protobuf_decode_miss_us": _per_object(decode_miss, batch, rounds),
        "reference_decode_us": _per_object(lambda: pb.decode_reference(plan, raw), batch, rounds),
        "upb_parse_us": _per_object(lambda: cls.FromString(pb._unwrap(pb_body)[2]), batch, rounds),
        "json_encode_us": _per_object(lambda: orjson.dumps(pod), batch, rounds),
        "protobuf_encode_us": _per_object(lambda: pb.encode(pod), batch, rounds),
        "protobuf_encode_miss_us": _per_object(encode_miss, batch, rounds),
        "reference_encode_us": _per_object(lambda: pb.encode_reference(plan, pod), batch, rounds),
        "upb_serialize_us": _per_object(lambda: msg.SerializeToString(deterministic=True), batch, rounds),
    }
    return figures


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench protobuf", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--in-situ", action="store_true",
                    help="instead: pod creates through the API server's create path, JSON vs protobuf, by stage "
                         "(bench/protobuf_in_situ.py)")
    ap.add_argument("--creates", type=int, default=1500, help="with --in-situ: creates per round and form")
    args = ap.parse_args(argv)
    if args.in_situ:
        from .protobuf_in_situ import in_situ

        return in_situ(args.creates, min(args.rounds, 6))
    from google.protobuf.internal import api_implementation

    f = run(args.rounds, args.batch)
    print(f"pod: {f['json_bytes']} B JSON, {f['protobuf_bytes']} B protobuf; protobuf implementation: "
          f"{api_implementation.Type()}; median of {args.rounds} x {args.batch}")
    print(f"{'':24}{'orjson':>10}{'protobuf':>10}{'no memo hit':>13}{'reference walk':>16}{'(upb alone)':>13}")
    for way in ("decode", "encode"):
        upb = f["upb_parse_us" if way == "decode" else "upb_serialize_us"]
        print(f"{way + ', CPU us/object':24}{f[f'json_{way}_us']:10.1f}{f[f'protobuf_{way}_us']:10.1f}"
              f"{f[f'protobuf_{way}_miss_us']:13.1f}{f[f'reference_{way}_us']:16.1f}{upb:13.1f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
