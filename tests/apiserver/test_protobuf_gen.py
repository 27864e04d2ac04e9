"""The generated per-message functions (machinery/protobuf_gen.py) against the reference walk.

Each generated function either gives exactly what the reference walk (upb + ListFields on the
way in, constructor keywords + upb on the way out) gives, or raises Slow and the codec runs
the reference.  These tests hold the fast path to the reference, byte for byte and dict for
dict, and check that the ordinary shapes (golden bodies, schema-generated objects, the bench
pod) really take the fast path; inputs that need the reference (unknown fields, merged
repeats, packed scalars, negative numbers, wrong types) still come out as the reference's.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeplane.apiserver.machinery import protobuf as pb
from kubeplane.apiserver.machinery.protobuf_gen import Slow, varint
from kubeplane.apiserver.registry.schema.defs import definitions
from test_protobuf_codec import GOLDEN, GOLDEN_PAIRS, SCHEMA_KINDS, _read, _strategy

pytestmark = pytest.mark.skipif(not os.path.isdir(GOLDEN), reason="upstream-golden not found")


def _fast_decode(body: bytes) -> Any:
    """The generated decoder alone (Slow propagates): the object as decode gives it."""
    api_version, kind, raw = pb._unwrap(body)
    plan = pb._plan_for(api_version, kind)
    return {"kind": kind, "apiVersion": api_version, **pb.generator().decoder(plan)(raw, 0, len(raw))}


def _ref_decode(body: bytes) -> Any:
    api_version, kind, raw = pb._unwrap(body)
    return {"kind": kind, "apiVersion": api_version, **pb.decode_reference(pb._plan_for(api_version, kind), raw)}


def _fast_encode(obj: dict[str, Any], strict: bool = False) -> bytes:
    plan = pb._plan_for(obj["apiVersion"], obj["kind"])
    return bytes(pb.generator().encoder(plan)(obj, strict))


def _ref_encode(obj: dict[str, Any], strict: bool = False) -> bytes:
    return pb.encode_reference(pb._plan_for(obj["apiVersion"], obj["kind"]), obj, strict)


def _outcome(fn, *args) -> Any:
    """The result, or the ProtobufError's message."""
    try:
        return ("ok", fn(*args))
    except pb.ProtobufError as e:
        return ("error", e.message)


@pytest.mark.parametrize("pb_name", [p for p, _ in GOLDEN_PAIRS])
def test_golden_bodies_take_the_fast_path(pb_name: str) -> None:
    body = _read(pb_name)
    if pb_name.startswith("list-"):
        pytest.skip("a List's items are decoded like a GET's object")
    got = _fast_decode(body)
    assert got == _ref_decode(body)
    assert orjson.dumps(got) == orjson.dumps(_ref_decode(body))  # key order too
    assert _fast_encode(got) == _ref_encode(got)
    assert _fast_encode(got, True) == _ref_encode(got, True)


@pytest.mark.parametrize("api_version,kind,def_name", SCHEMA_KINDS, ids=[f"{a}/{k}" for a, k, _ in SCHEMA_KINDS])
def test_schema_objects_fast_equals_reference(api_version: str, kind: str, def_name: str) -> None:
    strategy = _strategy(definitions()[def_name], 0, top=True)

    @settings(max_examples=int(os.environ.get("KUBEPLANE_PB_EXAMPLES", "8")), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(obj: dict[str, Any]) -> None:
        obj = {"kind": kind, "apiVersion": api_version, **obj}
        ref = _ref_encode(obj, True)
        try:
            fast = _fast_encode(obj, True)
        except Slow:
            fast = None  # floats in integer fields and the like: the reference's business
        if fast is not None:
            _same_encoding(fast, ref, obj)
        body = pb.MAGIC + pb._envelope(api_version, kind, ref)
        want = _ref_decode(body)
        got = _fast_decode(body)  # a body upb wrote always takes the fast path
        assert orjson.dumps(got) == orjson.dumps(want)
        _same_encoding(_fast_encode(got, True), _ref_encode(want, True), got)

    check()


def _same_encoding(fast: bytes, ref: bytes, obj: dict[str, Any]) -> None:
    """The generated encoder's bytes are the reference's, but for the order of map keys
    where one is a prefix of another: upb writes the longer first, gogo (sortkeys.Strings) and
    the generated encoder the shorter (test_map_key_order_is_gos)."""
    if fast == ref:
        return
    assert _has_prefix_keys(obj) and len(fast) == len(ref)
    av, kind = obj["apiVersion"], obj["kind"]
    assert _ref_decode(pb.envelope(av, kind, fast)) == _ref_decode(pb.envelope(av, kind, ref))


def _has_prefix_keys(v: Any) -> bool:
    if isinstance(v, dict):
        keys = sorted(v)
        return any(b.startswith(a) for a, b in zip(keys, keys[1:])) or any(map(_has_prefix_keys, v.values()))
    if isinstance(v, list):
        return any(map(_has_prefix_keys, v))
    return False


def test_map_key_order_is_gos() -> None:
    """Map entries in Go's sort.Strings order, as gogo writes them (sortkeys.Strings): "app"
    before "app.kubernetes.io/name".  upb's deterministic order puts a key after the keys it is
    a prefix of, so here the generated encoder, not the reference, gives upstream's bytes."""
    labels = {"app.kubernetes.io/name": "x", "app": "y", "b": "z", "a": "w"}
    raw = pb.encode_message("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta", {"labels": labels})
    order = []
    p = 0
    while p < len(raw):  # the fields ObjectMeta always writes, then the labels (field 11)
        tag = raw[p]
        p += 1
        if tag & 7 == 0:
            while raw[p] & 0x80:
                p += 1
            p += 1
            continue
        n = raw[p]
        entry = raw[p + 1:p + 1 + n]
        p += 1 + n
        if tag == 0x5A:
            order.append(entry[2:2 + entry[1]].decode())
    assert order == ["a", "app", "app.kubernetes.io/name", "b"]


def _pod() -> dict[str, Any]:
    """A pod like the benchmarks' (~2 KB), upstream-shaped by one trip through the reference."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "uid": "2b7e1c3e-5d0f-4b53-9c51-6b0b6a1f2a11",
                     "resourceVersion": "42", "creationTimestamp": "2026-12-07T13:41:53Z",
                     "labels": {"app": "web", "tier": "backend"}, "annotations": {"note": "x" * 40}},
        "spec": {
            "containers": [{
                "name": "app", "image": "registry.example.com/app:1.2.3", "command": ["/bin/app", "--port=8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": f"ENV_{i}", "value": f"value-{i}-" + "v" * 20} for i in range(12)],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            }],
            "volumes": [{"name": "config", "configMap": {"name": "app-config"}}, {"name": "d", "emptyDir": {}}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }
    plan = pb._plan_for("v1", "Pod")
    return {"kind": "Pod", "apiVersion": "v1", **pb.decode_reference(plan, pb.encode_reference(plan, pod))}


def _raw(body: bytes) -> bytes:
    return pb._unwrap(body)[2]


def _with_raw(body: bytes, raw: bytes) -> bytes:
    api_version, kind, _ = pb._unwrap(body)
    return pb.envelope(api_version, kind, raw)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire) + payload


def test_bodies_that_need_the_reference_decode_as_it_does() -> None:
    """Unknown fields, a repeated singular message (protobuf merges them), a negative integer,
    a bool written as 2: the fast path hands over, and decode gives the reference's answer."""
    pod = _pod()
    body = pb.encode(pod)
    raw = _raw(body)
    entry = b"\n\x05extra\x12\x03yes"
    meta = _field(11, 2, varint(len(entry)) + entry)  # ObjectMeta.labels, one entry
    negative = _field(7, 0, varint(-3))  # ObjectMeta.generation = -3 (ten bytes)
    cases = {
        "unknown varint": raw + _field(99, 0, varint(5)),
        "unknown bytes": raw + _field(99, 2, varint(3) + b"abc"),
        "unknown fixed64": raw + _field(99, 1, b"\x00" * 8),
        "metadata twice (merged)": raw + _field(1, 2, varint(len(meta)) + meta),
        "negative generation": raw + _field(1, 2, varint(len(negative)) + negative),
        "field 1 as a varint": _field(1, 0, varint(1)) + raw,
    }
    for name, r in cases.items():
        b = _with_raw(body, r)
        with pytest.raises(Exception):
            _fast_decode(b)
        got = _outcome(lambda x: pb.decode(x)[2], b)
        want = _outcome(_ref_decode, b)
        assert got == want, name
    merged = pb.decode(_with_raw(body, cases["metadata twice (merged)"]))[2]
    assert merged["metadata"]["labels"]["extra"] == "yes" and merged["metadata"]["name"] == pod["metadata"]["name"]


@settings(max_examples=300, deadline=None, database=None)
@given(st.data())
def test_mutated_bodies_decode_as_the_reference(data: st.DataObject) -> None:
    """Whatever bytes come in, decode (fast path or not) answers what the reference answers:
    the same object, or the same error."""
    name = data.draw(st.sampled_from([p for p, _ in GOLDEN_PAIRS if p.startswith("get-")]))
    body = bytearray(_read(name))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(4, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    b = bytes(body)
    want = _outcome(_ref_decode, b)
    got = _outcome(lambda x: pb.decode(x)[2], b)
    if want[0] == "ok":
        assert got[0] == "ok" and orjson.dumps(got[1]) == orjson.dumps(want[1])
    else:
        assert got == want


@pytest.mark.parametrize("path,value", [
    (("spec", "containers", 0, "ports", 0, "containerPort"), 80.0),       # float in an int32
    (("spec", "containers", 0, "ports", 0, "containerPort"), 1 << 40),    # out of int32's range
    (("spec", "containers", 0, "name"), 5),                               # int in a string
    (("spec", "containers", 0, "stdin"), 1),                              # int in a bool
    (("metadata", "creationTimestamp"), "yesterday"),                     # not RFC 3339
    (("spec", "containers", 0, "resources", "requests", "cpu"), True),    # bool as a Quantity
    (("spec", "containers"), {"name": "x"}),                              # object for a list
    (("spec", "nodeSelector"), ["a"]),                                    # list for a map
    (("metadata", "labels", "a"), None),                                  # null in a map
])
def test_values_that_need_the_reference_encode_as_it_does(path: tuple, value: Any) -> None:
    pod = _pod()
    node = pod
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(Exception):
        _fast_encode(pod)
    assert _outcome(pb.encode, pod) == _outcome(lambda o: pb.MAGIC + pb._envelope("v1", "Pod", _ref_encode(o)), pod)


def test_strict_unknown_field_anywhere_is_the_reference_error() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["bogus"] = 1
    assert pb.encode(pod)  # not strict: ignored, as before
    with pytest.raises(pb.ProtobufError) as e:
        pb.encode(pod, strict=True)
    assert e.value.message == 'unknown field "bogus" in k8s.io.api.core.v1.Container'
    vol = _pod()
    vol["spec"]["volumes"][0]["bogus"] = 1  # Volume: its own keys and its inline VolumeSource's
    with pytest.raises(pb.ProtobufError) as e:
        pb.encode(vol, strict=True)
    assert e.value.message == 'unknown field "bogus" in k8s.io.api.core.v1.Volume'


def test_the_bench_pod_takes_the_fast_path_both_ways() -> None:
    pod = _pod()
    body = pb.encode(pod)
    assert _fast_encode(pod) == _ref_encode(pod)
    assert orjson.dumps(_fast_decode(body)) == orjson.dumps(_ref_decode(body)) == orjson.dumps(pod)


def test_memo_returns_fresh_equal_objects() -> None:
    """A spec decoded from the memo is a new object each time (the write path changes it), and
    a changed spec is encoded anew."""
    pod = _pod()
    body = pb.encode(pod)
    memo = pb.generator().memo
    first = pb.decode(body)[2]
    hits = memo.hits
    second = pb.decode(body)[2]
    assert memo.hits > hits  # the spec came from the memo
    assert second == first and second["spec"] is not first["spec"]
    second["spec"]["containers"][0]["image"] = "changed"
    assert pb.decode(body)[2] == first
    changed = pb.encode(second)
    assert changed != body and pb.decode(changed)[2] == second
    assert changed == pb.MAGIC + pb._envelope("v1", "Pod", _ref_encode(second))


def test_memo_is_bounded() -> None:
    from kubeplane.apiserver.machinery.protobuf_gen import Memo

    m = Memo(budget=1000)
    for i in range(100):
        m.put((1, b"k%03d" % i + b"x" * 100), b"v" * 100)
    assert m.size <= 1000 and len(m.d) <= 5
    assert m.get((1, b"k099" + b"x" * 100)) == b"v" * 100  # the newest stay


def test_a_created_version_is_encoded_once() -> None:
    """A create answered in protobuf leaves its bare message for the version's cache entry,
    which serves it instead of encoding again (cache/entry.py); another revision encodes."""
    from kubeplane.apiserver.cache import entry as entry_mod

    pod = _pod()
    pod["metadata"]["resourceVersion"] = "77"
    raw = pb.encode_raw(pod, "v1", "Pod")
    key = b"/registry/pods/default/web-0"
    entry_mod.remember_protobuf(key, 77, raw)
    stored = orjson.dumps({**pod, "metadata": {k: v for k, v in pod["metadata"].items() if k != "resourceVersion"}})
    e = entry_mod.Entry(key, 77, stored, {}, {})
    got = e.protobuf("v1", "Pod")
    assert got is raw  # taken, not encoded again
    assert (key, 77) not in entry_mod._ENCODED
    assert got == pb.encode_raw(e.obj(), "v1", "Pod")  # and what the entry would have encoded
    other = entry_mod.Entry(key, 78, stored, {}, {})
    assert pb.decode_message("k8s.io.api.core.v1.Pod", other.protobuf("v1", "Pod"))["metadata"]["resourceVersion"] == "78"


def test_remembered_encodings_are_bounded() -> None:
    from kubeplane.apiserver.cache import entry as entry_mod

    for i in range(entry_mod._ENCODED_MAX + 50):
        entry_mod.remember_protobuf(b"/k", 10_000 + i, b"x")
    assert len(entry_mod._ENCODED) <= entry_mod._ENCODED_MAX
