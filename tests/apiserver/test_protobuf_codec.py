"""The protobuf codec (kubeplane/apiserver/machinery/protobuf.py) against upstream's bytes.

- every golden protobuf body (GET of 37 kinds, a list, a Status, a watch stream) decodes to
  its JSON counterpart, and encoding that JSON gives bytes that decode the same (and, where
  the 1.28 recording and the 1.33 table agree, upstream's very bytes);
- JSON -> protobuf -> JSON over objects generated from the 1.33 JSON schemas (Hypothesis);
- bad bodies raise ProtobufError, never anything else.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeplane.apiserver.machinery import protobuf as pb
from kubeplane.apiserver.registry.schema.defs import definitions

GOLDEN = os.environ.get("KUBEPLANE_GOLDEN",
                        os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "upstream-golden"))
if not os.path.isdir(GOLDEN):
    GOLDEN = "/work/shared/upstream-golden"

pytestmark = pytest.mark.skipif(not os.path.isdir(GOLDEN), reason="upstream-golden not found")


def _golden_pairs() -> list[tuple[str, str]]:
    """(protobuf file, JSON file) of every GET/list/error protobuf recording in index.json."""
    with open(os.path.join(GOLDEN, "index.json")) as f:
        index = json.load(f)
    pairs = []
    for entry in index:
        name = entry["file"]
        if not entry["content_type"].startswith(pb.CONTENT_TYPE) or name.startswith("watch-"):
            continue
        assert name.startswith(("get-", "list-", "err-")), name
        json_name = name[:-3] + ".json"
        if name.endswith("-pb.pb"):
            json_name = name[:-6] + ".json"
        pairs.append((name, json_name))
    return pairs


GOLDEN_PAIRS = _golden_pairs() if os.path.isdir(GOLDEN) else []

# Upstream's JSON of these was written after server-side defaulting that the protobuf bytes do
# not carry (TypeMeta of StatefulSet's embedded PVC templates): the decoded JSON lacks exactly these.
DEFAULTED_ON_READ = {"get-StatefulSet.pb": [("spec", "volumeClaimTemplates", "*", "kind"),
                                             ("spec", "volumeClaimTemplates", "*", "apiVersion")]}
# Fields 1.33's Go types have and the 1.28 recording did not: encoding writes their zero value,
# so the body is a few bytes longer than upstream's 1.28 bytes.
NEWER_THAN_RECORDING = {"get-Pod.pb": "PodStatus.observedGeneration (1.33)"}


def _read(name: str) -> bytes:
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


def _drop(obj: Any, path: tuple[str, ...]) -> None:
    if not path or obj is None:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in obj:
            _drop(item, rest)
    elif not rest:
        obj.pop(head, None)
    elif head in obj:
        _drop(obj[head], rest)


def test_golden_set_is_complete() -> None:
    assert len(GOLDEN_PAIRS) >= 39  # 37 GETs, the list, the protobuf 404


@pytest.mark.parametrize("pb_name,json_name", GOLDEN_PAIRS, ids=[p for p, _ in GOLDEN_PAIRS])
def test_golden_decode(pb_name: str, json_name: str) -> None:
    want = json.loads(_read(json_name))
    for path in DEFAULTED_ON_READ.get(pb_name, ()):
        _drop(want, path)
    api_version, kind, obj = pb.decode(_read(pb_name))
    assert (api_version, kind) == (want["apiVersion"], want["kind"])
    assert obj == want
    assert list(obj)[:2] == ["kind", "apiVersion"]
    if pb_name not in DEFAULTED_ON_READ:
        # Go's struct order and sorted map keys: the very bytes of upstream's JSON body.
        assert orjson.dumps(obj) == _read(json_name).rstrip(b"\n")


@pytest.mark.parametrize("pb_name,json_name", GOLDEN_PAIRS, ids=[p for p, _ in GOLDEN_PAIRS])
def test_golden_encode(pb_name: str, json_name: str) -> None:
    want = json.loads(_read(json_name))
    for path in DEFAULTED_ON_READ.get(pb_name, ()):
        _drop(want, path)
    body = pb.encode(want, strict=True)
    assert pb.decode(body)[2] == want
    upstream = _read(pb_name)
    if pb_name in NEWER_THAN_RECORDING:
        assert body != upstream and len(body) > len(upstream)
    else:
        assert body == upstream


def _json_only_golden() -> list[str]:
    """The recorded JSON bodies with no protobuf twin: 201s of creates and error Statuses."""
    with open(os.path.join(GOLDEN, "index.json")) as f:
        index = json.load(f)
    return [e["file"] for e in index if e["content_type"] == "application/json"
            and e["file"].startswith(("create-", "err-"))]


@pytest.mark.parametrize("json_name", _json_only_golden() if os.path.isdir(GOLDEN) else [])
def test_golden_json_roundtrip(json_name: str) -> None:
    """Real objects as upstream writes them: JSON -> protobuf -> JSON gives them back."""
    want = json.loads(_read(json_name))
    if json_name == "create-StatefulSet.json":  # its PVC templates' TypeMeta is defaulting, not wire
        for path in DEFAULTED_ON_READ["get-StatefulSet.pb"]:
            _drop(want, path)
    back = pb.decode(pb.encode(want, strict=True))[2]
    assert back == want
    body = _read(json_name)
    if not body.startswith(b"{\n") and json_name != "create-StatefulSet.json":  # compact, as the server writes
        assert orjson.dumps(back) == body.rstrip(b"\n")


def test_golden_byte_identical_count() -> None:
    """How many golden bodies kubeplane re-encodes to upstream's exact bytes (reported in docs)."""
    same = sum(pb.encode(json.loads(_read(j))) == _read(p) for p, j in GOLDEN_PAIRS)
    assert same == len(GOLDEN_PAIRS) - len(NEWER_THAN_RECORDING)


def test_golden_watch() -> None:
    data = _read("watch-ConfigMap.pb")
    want = [json.loads(line) for line in _read("watch-ConfigMap.json").splitlines() if line.strip()]
    events = pb.decode_watch(data)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]

    def unstamped(event: dict[str, Any]) -> dict[str, Any]:
        # The two recordings watched two different ConfigMaps: uid, resourceVersion, times differ.
        event = json.loads(json.dumps(event))
        meta = event["object"]["metadata"]
        for k in ("uid", "resourceVersion", "creationTimestamp"):
            assert meta.pop(k)
        for entry in meta["managedFields"]:
            entry.pop("time")
        return event

    assert [unstamped(e) for e in events] == [unstamped(e) for e in want]
    # Re-framing each decoded event gives upstream's bytes.
    frames = b"".join(pb.watch_frame(e["type"], pb.encode(e["object"])) for e in events)
    assert frames == data
    with pytest.raises(pb.ProtobufError):
        pb.decode_watch(data[:-3])


def test_status_encode_matches_upstream() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": 'pods "nope" not found', "reason": "NotFound",
              "details": {"name": "nope", "kind": "pods"}, "code": 404}
    assert pb.encode(status) == _read("err-404-named-pb.pb")


def test_message_types_cover_builtin_kinds() -> None:
    types = pb.message_types()
    assert types[("", "v1", "Pod")] == ".k8s.io.api.core.v1.Pod"
    assert types[("apps", "v1", "Deployment")] == ".k8s.io.api.apps.v1.Deployment"
    assert types[("rbac.authorization.k8s.io", "v1", "ClusterRole")] == ".k8s.io.api.rbac.v1.ClusterRole"
    assert types[("autoscaling", "v2", "HorizontalPodAutoscaler")] == \
        ".k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler"
    assert types[("policy", "v1", "Eviction")] == ".k8s.io.api.policy.v1.Eviction"
    assert types[("", "v1", "ConfigMapList")] == ".k8s.io.api.core.v1.ConfigMapList"
    assert pb.meta_kinds()["Status"] == ".k8s.io.apimachinery.pkg.apis.meta.v1.Status"
    # Every built-in kind the 1.33 schemas define (x-kubernetes-group-version-kind) has a message.
    missing = []
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            key = (gvk["group"], gvk["version"], gvk["kind"])
            if name.startswith("io.k8s.api.") and key not in types:
                missing.append(key)
    assert not missing


def test_runs_in_upb() -> None:
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "upb"


@pytest.mark.parametrize("ns,text", [(0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"),
                                     (1_500_000_000, "1.5s"), (90 * 10**9, "1m30s"),
                                     (3600 * 10**9, "1h0m0s"), (-(5 * 10**9), "-5s"),
                                     (26 * 3600 * 10**9 + 10**8, "26h0m0.1s")])
def test_go_duration(ns: int, text: str) -> None:
    assert pb.format_duration(ns) == text
    assert pb.parse_duration(text) == ns


def test_special_types_roundtrip() -> None:
    """Duration, MicroTime, IntOrString (both arms), Quantity, RawExtension and bytes in one go."""
    lease = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
             "metadata": {"name": "l", "creationTimestamp": None},
             "spec": {"holderIdentity": "h", "acquireTime": "2024-01-02T03:04:05.123456Z",
                      "leaseDurationSeconds": 15}}
    assert pb.decode(pb.encode(lease))[2] == lease
    cr = {"kind": "ControllerRevision", "apiVersion": "apps/v1",
          "metadata": {"name": "r", "creationTimestamp": None}, "data": {"a": [1, {"b": None}]}, "revision": 3}
    assert pb.decode(pb.encode(cr))[2] == cr
    pdb = {"kind": "PodDisruptionBudget", "apiVersion": "policy/v1",
           "metadata": {"name": "p", "creationTimestamp": None},
           "spec": {"minAvailable": "50%", "maxUnavailable": 1}, "status": {
               "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}}
    assert pb.decode(pb.encode(pdb))[2] == pdb
    secret = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "creationTimestamp": None},
              "data": {"k": base64.b64encode(b"\x00\xff").decode()}, "type": "Opaque"}
    assert pb.decode(pb.encode(secret))[2] == secret
    tr = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
          "metadata": {"creationTimestamp": None}, "spec": {},
          "status": {"user": {"extra": {"x": ["a", "b"]}}}}
    assert pb.decode(pb.encode(tr))[2] == tr


def test_raw_extension_holding_protobuf() -> None:
    """A v1.List whose items are enveloped protobuf objects (as upstream's protobuf serializer
    embeds them) decodes to the items' JSON."""
    cm = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "creationTimestamp": None},
          "data": {"k": "v"}}
    item = pb.encode(cm)
    raw_list = (b"\x0a\x06\x0a\x00\x12\x00\x1a\x00"  # metadata: ListMeta{"", "", ""}
                + b"\x12" + bytes([len(item) + 2]) + b"\x0a" + bytes([len(item)]) + item)
    body = pb.MAGIC + pb._envelope("v1", "List", raw_list)
    assert pb.decode(body)[2] == {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [cm]}


def test_json_null_is_go_zero() -> None:
    """encoding/json leaves a Go value as it was on null: a struct or scalar is its zero value, a
    pointer/slice/map nil; so null encodes like absence."""
    with_nulls = {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d", "labels": None},
                  "spec": None, "status": {"replicas": None, "conditions": None}}
    without = {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d"}}
    assert pb.encode(with_nulls) == pb.encode(without)
    assert pb.decode(pb.encode(without))[2] == {
        "kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d", "creationTimestamp": None},
        "spec": {"selector": None, "template": {"metadata": {"creationTimestamp": None}, "spec": {"containers": None}},
                 "strategy": {}}, "status": {}}


def test_unknown_json_field_strict() -> None:
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "bogus": 1}}
    assert pb.decode(pb.encode(obj))[2]["metadata"] == {"name": "x", "creationTimestamp": None}
    with pytest.raises(pb.ProtobufError, match="bogus"):
        pb.encode(obj, strict=True)


# --- round trip over schema-generated objects -------------------------------------------------

_STRING = st.text(alphabet="abcxyz-0129./", min_size=1, max_size=8)
_QUANTITY = st.sampled_from(["1", "100m", "64Mi", "2Gi", "1500m", "3"])
_TIME = st.integers(0, 2**32).map(pb.format_time)
_MICRO = st.tuples(st.integers(0, 2**32), st.integers(0, 999_999)).map(
    lambda t: pb.format_micro_time(t[0], t[1] * 1000))
_JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000) | _STRING,
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_STRING, inner, max_size=3),
                        max_leaves=6)
_SPECIAL = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": _QUANTITY,
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": st.integers(1, 65535) | _STRING,
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": _TIME,
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": _MICRO,
    "io.k8s.apimachinery.pkg.runtime.RawExtension": st.dictionaries(_STRING, _JSONISH, min_size=1, max_size=3),
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": st.dictionaries(
        st.sampled_from(["f:a", "f:b", "."]), st.just({}), min_size=1),
}
_MAX_DEPTH = 7


def _strategy(schema: dict[str, Any], depth: int, top: bool = False) -> st.SearchStrategy[Any]:
    """Non-zero JSON values for a schema (zero values and nulls are upstream-normalised away
    by design; the test checks that the codec only ever adds zero values)."""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in _SPECIAL:
            return _SPECIAL[name]
        return _strategy(definitions()[name], depth, top)
    types = {t for t in ([schema["type"]] if isinstance(schema.get("type"), str) else schema.get("type", []))
             if t != "null"}
    if "enum" in schema:
        return st.sampled_from([v for v in schema["enum"] if v])
    if "object" in types and "properties" in schema:
        if depth > _MAX_DEPTH:
            return st.just({})
        props = {}
        for k, sub in schema["properties"].items():
            if k in ("kind", "apiVersion") and not top:
                continue  # embedded TypeMeta is not on the wire (upstream drops it too)
            props[k] = st.deferred(lambda sub=sub: _strategy(sub, depth + 1))
        if top:
            props.pop("kind", None)
            props.pop("apiVersion", None)
        return st.fixed_dictionaries({}, optional=props)
    if "object" in types:
        value = schema.get("additionalProperties")
        if isinstance(value, dict):
            return st.dictionaries(_STRING, st.deferred(lambda: _strategy(value, depth + 1)),
                                   min_size=1, max_size=2)
        return st.just({})  # a struct without fields (StorageVersionSpec)
    if "array" in types:
        item = schema.get("items", {})
        return st.lists(st.deferred(lambda: _strategy(item, depth + 1)), min_size=1, max_size=2)
    if "string" in types:
        if schema.get("format") == "byte":
            return st.binary(min_size=1, max_size=6).map(lambda b: base64.b64encode(b).decode())
        if schema.get("format") == "date-time":
            return _TIME
        return _STRING
    if "integer" in types:
        bits = 31 if schema.get("format") == "int32" else 53
        return st.integers(1, 2**bits - 1)
    if "number" in types:
        return st.sampled_from([0.5, 1.25, 3.0e10])
    if "boolean" in types:
        return st.just(True)
    return st.just({})


def _zero(v: Any) -> bool:
    if isinstance(v, dict):
        return all(_zero(x) for x in v.values())
    return v in (None, 0, "", False, "0")


def _covers(sent: Any, got: Any, path: str = "") -> None:
    """``got`` holds everything ``sent`` did; anything extra is a zero value."""
    if isinstance(sent, dict) and isinstance(got, dict):
        for k, v in sent.items():
            assert k in got, f"{path}/{k} lost"
            _covers(v, got[k], f"{path}/{k}")
        for k in set(got) - set(sent):
            assert _zero(got[k]), f"{path}/{k} = {got[k]!r} appeared"
    elif isinstance(sent, list) and isinstance(got, list):
        assert len(sent) == len(got), path
        for i, (a, b) in enumerate(zip(sent, got)):
            _covers(a, b, f"{path}/{i}")
    else:
        assert sent == got, f"{path}: {sent!r} != {got!r}"


def _schema_kinds() -> list[tuple[str, str, str]]:
    """(apiVersion, kind, definition) of every non-List built-in kind with a 1.33 schema."""
    types = pb.message_types()
    out = []
    for name, schema in sorted(definitions().items()):
        if not name.startswith("io.k8s.api."):
            continue
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            if (gvk["group"], gvk["version"], gvk["kind"]) in types and not gvk["kind"].endswith("List"):
                av = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                out.append((av, gvk["kind"], name))
    return out


SCHEMA_KINDS = _schema_kinds()


def test_schema_kinds_sample_is_broad() -> None:
    assert len(SCHEMA_KINDS) >= 60
    assert {k for _, k, _ in SCHEMA_KINDS} >= {"Pod", "Deployment", "StatefulSet", "CronJob", "Node",
                                                "CustomResourceDefinition"} - {"CustomResourceDefinition"}


def test_every_served_kind_is_round_tripped() -> None:
    """Every built-in resource the server serves is among the kinds round-tripped below
    (but CustomResourceDefinition, whose schema is not under io.k8s.api)."""
    from kubeplane.apiserver.registry.resources import BUILTIN

    sampled = {(a, k) for a, k, _ in SCHEMA_KINDS}
    assert not [(r.api_version, r.kind) for r in BUILTIN
                if (r.api_version, r.kind) not in sampled and r.group != "apiextensions.k8s.io"]


@pytest.mark.parametrize("api_version,kind,def_name", SCHEMA_KINDS, ids=[f"{a}/{k}" for a, k, _ in SCHEMA_KINDS])
def test_roundtrip_schema_objects(api_version: str, kind: str, def_name: str) -> None:
    strategy = _strategy(definitions()[def_name], 0, top=True)

    @settings(max_examples=int(os.environ.get("KUBEPLANE_PB_EXAMPLES", "8")), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(obj: dict[str, Any]) -> None:
        obj = {"kind": kind, "apiVersion": api_version, **obj}
        body = pb.encode(obj, strict=True)
        back = pb.decode(body)[2]
        _covers(obj, back)
        # What came back is upstream-shaped: it survives another trip unchanged, byte for byte.
        again = pb.encode(back, strict=True)
        assert again == body
        assert pb.decode(again)[2] == back

    check()


# --- bad input ---------------------------------------------------------------------------------

def test_bad_magic() -> None:
    with pytest.raises(pb.ProtobufError) as e:
        pb.decode(b'{"kind":"Pod"}')
    assert "expected prefix" in e.value.message and e.value.status == 400


def test_unknown_kind() -> None:
    body = pb.encode({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}})
    bad = body.replace(b"\x09ConfigMap", b"\x09ConfigMop")
    with pytest.raises(pb.ProtobufError) as e:
        pb.decode(bad)
    assert 'no kind "ConfigMop" is registered for version "v1"' in e.value.message


def test_truncated_golden_bodies() -> None:
    body = _read("get-Pod.pb")
    raised = 0
    for cut in range(4, len(body) - 4, 7):
        try:
            pb.decode(body[:cut])
        except pb.ProtobufError:
            raised += 1
    assert raised >= (len(body) - 8) // 7 - 2  # all but the cuts that end exactly on the envelope's tail


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from([p for p, _ in GOLDEN_PAIRS] or ["x"]), st.data())
def test_mutated_bodies_only_raise_protobuf_error(name: str, data: st.DataObject) -> None:
    body = bytearray(_read(name))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    try:
        pb.decode(bytes(body))
    except pb.ProtobufError:
        pass


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_protobuf_error(tail: bytes) -> None:
    for body in (tail, pb.MAGIC + tail):
        try:
            pb.decode(body)
        except pb.ProtobufError:
            pass
    try:
        list(pb.iter_watch_frames(struct.pack(">I", len(tail) + 3) + tail))
    except pb.ProtobufError:
        pass


# --- the table and its generator -----------------------------------------------------------------

def test_table_covers_upstream_files() -> None:
    table = pb.load_table()
    assert table["source"]["tag"].startswith("v0.33.")
    dirs = {p["dir"] for p in table["packages"]}
    assert {"pkg/apis/meta/v1", "pkg/runtime", "pkg/runtime/schema", "pkg/util/intstr", "pkg/api/resource",
            "core/v1", "apps/v1", "batch/v1", "rbac/v1", "networking/v1", "storage/v1"} <= dirs
    assert len(dirs) == 65  # k8s.io/api v0.33's 60 generated.proto + apimachinery's 5
    core = next(p for p in table["packages"] if p["dir"] == "core/v1")
    assert core["group"] == "" and core["package"] == "k8s.io.api.core.v1"
    volume = {row[0]: row for row in core["messages"]["Volume"]}
    assert volume["volumeSource"] == ["volumeSource", 2, "optional", ".k8s.io.api.core.v1.VolumeSource", None, "i"]


def _generator() -> Any:
    import importlib.machinery
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "gen-proto-table")
    loader = importlib.machinery.SourceFileLoader("gen_proto_table", path)
    spec = importlib.util.spec_from_loader("gen_proto_table", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_generator_parsers() -> None:
    gen = _generator()
    package, messages = gen.parse_proto('''
// comment with a glob pods/* and a message word
syntax = "proto2";
package k8s.io.api.demo.v1;
import "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto";
/* block */
message Demo {
  // +optional
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  map<string, string> labels = 2;
  repeated DemoItem items = 3;
  optional string message = 4;
}
message DemoItem {
}
''')
    assert package == "k8s.io.api.demo.v1"
    assert messages["Demo"] == [("metadata", 1, "optional", "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
                                ("labels", 2, "repeated", "map<string,string>"),
                                ("items", 3, "repeated", "DemoItem"), ("message", 4, "optional", "string")]
    assert gen.resolve("DemoItem", package) == ".k8s.io.api.demo.v1.DemoItem"
    assert gen.resolve("map<string,Quantity>", package) == "map<string,.k8s.io.api.demo.v1.Quantity>"
    structs, kinds, slices = gen.parse_go(['''
type Demo struct {
	metav1.TypeMeta `json:",inline"`
	// comment `json:"nope"`
	Message *string `json:"message,omitempty" protobuf:"bytes,4,opt,name=message"`
	metav1.ObjectMeta `json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"`
	Labels map[string]string `json:"labels" protobuf:"bytes,2,rep,name=labels"`
	DemoSource `json:",inline" protobuf:"bytes,3,opt,name=demoSource"`
	Hidden string `json:"-" protobuf:"bytes,5,opt,name=hidden"`
}

type Names []string
'''])
    assert kinds == {"Demo"} and slices == {"Names"}
    assert structs["Demo"] == {4: ("message", "po", 0), 1: ("metadata", "o", 1), 2: ("labels", "", 2),
                               3: (None, "i", 3), 5: (None, "", 4)}


def test_decoded_keys_in_go_order() -> None:
    """Fields absent on the wire that JSON still shows sit where Go's struct puts them."""
    # Role's rules has no omitempty: nil comes out as null, after metadata.
    role = pb.decode(pb.encode({"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1"}))[2]
    assert list(role) == ["kind", "apiVersion", "metadata", "rules"] and role["rules"] is None
    ports = pb.decode_message("k8s.io.api.core.v1.ContainerPort", b"\x18\x50")  # containerPort 80 only
    assert list(ports) == ["containerPort"]
    env = pb.decode_message("k8s.io.api.core.v1.EnvVar", b"\x12\x01v")  # value only: name comes first
    assert list(env) == ["name", "value"] and env == {"name": "", "value": "v"}
