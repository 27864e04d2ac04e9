"""managedFields tracking and server-side apply.

Shapes and messages follow upstream: FieldsV1 as a Deployment created by kubectl shows it,
conflict texts from k8s.io/apiserver/.../fieldmanager/internal/conflict.go, entry order
from managedfields.go (Apply before Update, then by time), "before-first-apply".
"""
from __future__ import annotations

import copy

import pytest

from kubeplane.apiserver.machinery.errors import APIError
from kubeplane.apiserver.registry.fieldmanager import (
    apply,
    fields_to_set,
    path_string,
    set_to_fields,
    update_managed_fields,
)
from kubeplane.apiserver.registry.schema.defs import SchemaNode

DEPLOYMENT = SchemaNode.for_definition("io.k8s.api.apps.v1.Deployment")
POD = SchemaNode.for_definition("io.k8s.api.core.v1.Pod")
T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", "2024-05-01T10:00:02Z"


def deployment(image: str = "nginx:1.25", replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "uid": "u-1", "resourceVersion": "5", "generation": 1,
                     "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": image, "args": ["--a"],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
            },
        },
    }


def config(**spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def entries(obj: dict) -> list[dict]:
    return obj["metadata"].get("managedFields", [])


def entry(obj: dict, manager: str, operation: str | None = None) -> dict:
    found = [e for e in entries(obj) if e["manager"] == manager
             and (operation is None or e["operation"] == operation)]
    assert len(found) == 1, entries(obj)
    return found[0]


def fields(obj: dict, manager: str, operation: str | None = None) -> set[str]:
    return {path_string(p) for p in fields_to_set(entry(obj, manager, operation)["fieldsV1"])}


def created() -> dict:
    return update_managed_fields(None, deployment(), "kubectl-create", api_version="apps/v1",
                                 now=T0, schema=DEPLOYMENT)


# --------------------------------------------------------------------------- FieldsV1

def test_create_records_fieldsv1_like_upstream():
    obj = created()
    [e] = entries(obj)
    assert e == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
        "time": T0, "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},          # atomic map: owned whole
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {"f:containers": {'k:{"name":"web"}': {
                        ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                        "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                            ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}},
                },
            },
        },
    }
    # no apiVersion/kind/name/namespace/uid/resourceVersion/generation/creationTimestamp
    assert "f:apiVersion" not in e["fieldsV1"] and "f:uid" not in e["fieldsV1"]["f:metadata"]
    assert {k: v for k, v in obj.items() if k != "metadata"} == \
        {k: v for k, v in deployment().items() if k != "metadata"}


def test_fieldsv1_roundtrip_and_key_canonical_form():
    f = {"f:spec": {"f:ports": {".": {}, 'k:{"protocol":"TCP","port":80}': {".": {}, "f:port": {}}}},
         "f:metadata": {"f:finalizers": {".": {}, 'v:"a/b"': {}}}}
    s = fields_to_set(f)
    assert ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}') in s   # keys sorted
    out = set_to_fields(s)
    assert list(out) == ["f:metadata", "f:spec"]
    assert out["f:spec"]["f:ports"] == {".": {}, 'k:{"port":80,"protocol":"TCP"}': {
        ".": {}, "f:port": {}}}
    assert fields_to_set(out) == s
    for bad in ([], {"x": {}}, {"f:a": 1}, {"k:[1]": {}}, {"i:x": {}}):
        with pytest.raises(ValueError):
            fields_to_set(bad)


def test_path_strings():
    assert path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert path_string(("f:spec", "f:containers", 'k:{"name":"web"}', "f:image")) == \
        '.spec.containers[name="web"].image'
    assert path_string(("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}')) == \
        '.ports[containerPort=80,protocol="TCP"]'
    assert path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'
    assert path_string(("f:a", "i:3")) == ".a[3]"


# --------------------------------------------------------------------------- updates

def test_update_moves_changed_fields_to_the_updater():
    obj = created()
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = 5
    new["metadata"]["labels"]["tier"] = "fe"
    out = update_managed_fields(obj, new, "hpa-controller", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    assert fields(out, "hpa-controller") == {".spec.replicas", ".metadata.labels.tier"}
    assert ".spec.replicas" not in fields(out, "kubectl-create")
    assert entry(out, "kubectl-create")["time"] == T0    # its set shrank, time unchanged
    assert entry(out, "hpa-controller")["time"] == T1
    # entries ordered by time within Update
    assert [e["manager"] for e in entries(out)] == ["kubectl-create", "hpa-controller"]
    assert out["spec"]["replicas"] == 5 and obj["spec"]["replicas"] == 2


def test_update_without_changes_adds_no_entry_and_keeps_times():
    obj = created()
    out = update_managed_fields(obj, copy.deepcopy(obj), "someone", api_version="apps/v1",
                                now=T2, schema=DEPLOYMENT)
    assert entries(out) == entries(obj)


def test_removed_fields_leave_every_manager_and_empty_entries_go():
    obj = created()
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = 3
    obj = update_managed_fields(obj, new, "scaler", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    new = copy.deepcopy(obj)
    del new["spec"]["replicas"]
    out = update_managed_fields(obj, new, "editor", api_version="apps/v1", now=T2,
                                schema=DEPLOYMENT)
    assert [e["manager"] for e in entries(out)] == ["kubectl-create"]   # scaler empty: gone
    assert ".spec.replicas" not in fields(out, "kubectl-create")


def test_removed_list_item_leaves_its_owners():
    obj = created()
    new = copy.deepcopy(obj)
    new["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    obj = update_managed_fields(obj, new, "injector", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    assert fields(obj, "injector") == {'.spec.template.spec.containers[name="side"]',
                                       '.spec.template.spec.containers[name="side"].name',
                                       '.spec.template.spec.containers[name="side"].image'}
    new = copy.deepcopy(obj)
    new["spec"]["template"]["spec"]["containers"].pop()
    out = update_managed_fields(obj, new, "kubectl-edit", api_version="apps/v1", now=T2,
                                schema=DEPLOYMENT)
    assert {e["manager"] for e in entries(out)} == {"kubectl-create"}


def test_reset_fields_and_status_subresource():
    obj = created()
    new = copy.deepcopy(obj)
    new["status"] = {"replicas": 2}
    out = update_managed_fields(obj, new, "kubectl", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT, reset_fields=["status"])
    assert entries(out) == entries(obj)        # status ignored on the main resource
    out = update_managed_fields(obj, new, "kube-controller-manager", subresource="status",
                                api_version="apps/v1", now=T1, schema=DEPLOYMENT,
                                reset_fields=["spec", "metadata"])
    e = entry(out, "kube-controller-manager")
    assert e["subresource"] == "status" and list(e)[-1] == "subresource"
    assert fields(out, "kube-controller-manager") == {".status.replicas"}
    assert "subresource" not in entry(out, "kubectl-create")


def test_client_sent_managed_fields_reset_or_kept():
    obj = created()
    new = copy.deepcopy(obj)
    new["metadata"]["managedFields"] = [{}]       # upstream: clears ownership
    out = update_managed_fields(obj, new, "kubectl", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    assert "managedFields" not in out["metadata"]
    new["metadata"]["managedFields"] = []          # empty list: the stored ones stay
    out = update_managed_fields(obj, new, "kubectl", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    assert entries(out) == entries(obj)
    new["metadata"]["managedFields"] = [{"manager": "x", "operation": "Update",
                                         "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                                         "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    out = update_managed_fields(obj, new, "kubectl", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    assert [e["manager"] for e in entries(out)] == ["x"]   # edited by the client
    new["metadata"]["managedFields"] = [{"fieldsV1": "garbage"}]
    out = update_managed_fields(obj, new, "kubectl", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    assert entries(out) == entries(obj)           # malformed: the stored ones stay


def test_configmap_without_schema_data_is_granular():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "data": {"a": "1", "b": "2"}}
    out = update_managed_fields(None, cm, "kubectl-create", api_version="v1", now=T0,
                                schema=SchemaNode.for_definition("io.k8s.api.core.v1.ConfigMap"))
    assert entry(out, "kubectl-create")["fieldsV1"] == {
        "f:data": {".": {}, "f:a": {}, "f:b": {}}}


def test_unknown_schema_maps_granular_lists_atomic():
    cr = {"apiVersion": "ex.com/v1", "kind": "W", "metadata": {"name": "w", "labels": {"x": "y"}},
          "spec": {"size": 1, "items": [{"name": "a"}], "nested": {"k": "v"}}}
    out = update_managed_fields(None, cr, "m", api_version="ex.com/v1", now=T0, schema=None)
    assert entry(out, "m")["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:x": {}}},
        "f:spec": {".": {}, "f:items": {}, "f:nested": {".": {}, "f:k": {}}, "f:size": {}}}


# --------------------------------------------------------------------------- server-side apply

def test_apply_creates():
    cfg = config(replicas=1, selector={"matchLabels": {"app": "web"}})
    out = apply(None, cfg, "kubectl", schema=DEPLOYMENT, api_version="apps/v1", now=T0)
    assert out["spec"] == cfg["spec"]
    [e] = entries(out)
    assert e == {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                 "time": T0, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:replicas": {}, "f:selector": {}}}}


def test_apply_rejects_managed_fields_in_body_and_non_objects():
    cfg = config(replicas=1)
    cfg["metadata"]["managedFields"] = []
    with pytest.raises(APIError) as e:
        apply(None, cfg, "kubectl", schema=DEPLOYMENT, api_version="apps/v1", now=T0)
    assert (e.value.code, e.value.message) == (400, "metadata.managedFields must be nil")
    with pytest.raises(APIError) as e:
        apply(None, ["x"], "kubectl", schema=DEPLOYMENT)
    assert e.value.code == 400


def test_apply_conflict_with_updater_single():
    obj = update_managed_fields(None, deployment(), "kubectl-client-side-apply",
                                api_version="apps/v1", now=T0, schema=DEPLOYMENT)
    with pytest.raises(APIError) as e:
        apply(obj, config(replicas=3), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    err = e.value
    assert err.code == 409 and err.reason == "Conflict"
    assert err.message == ('Apply failed with 1 conflict: conflict with '
                           '"kubectl-client-side-apply" using apps/v1: .spec.replicas')
    assert err.details == {"causes": [{
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.replicas"}]}
    st = err.status()
    assert st["code"] == 409 and st["details"]["causes"][0]["field"] == ".spec.replicas"


def test_apply_conflict_multiple_grouped_by_manager():
    obj = created()
    new = copy.deepcopy(obj)
    new["metadata"]["labels"]["team"] = "a"
    obj = update_managed_fields(obj, new, "labeler", api_version="v1", now=T1, schema=DEPLOYMENT)
    cfg = config(replicas=9, template={"spec": {"containers": [{"name": "web", "image": "x"}]}})
    cfg["metadata"]["labels"] = {"team": "b"}
    with pytest.raises(APIError) as e:
        apply(obj, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert e.value.message == (
        'Apply failed with 3 conflicts: conflicts with "kubectl-create" using apps/v1:\n'
        '- .spec.replicas\n'
        '- .spec.template.spec.containers[name="web"].image\n'
        'conflicts with "labeler" using v1:\n'
        '- .metadata.labels.team')
    assert [c["field"] for c in e.value.details["causes"]] == [
        ".spec.replicas", '.spec.template.spec.containers[name="web"].image',
        ".metadata.labels.team"]


def test_apply_force_takes_ownership():
    obj = created()
    out = apply(obj, config(replicas=3), "ssa", force=True, schema=DEPLOYMENT,
                api_version="apps/v1", now=T1)
    assert out["spec"]["replicas"] == 3
    assert fields(out, "ssa") == {".spec.replicas"}
    assert ".spec.replicas" not in fields(out, "kubectl-create")
    # Apply entries sort before Update entries
    assert [e["operation"] for e in entries(out)] == ["Apply", "Update"]
    assert obj["spec"]["replicas"] == 2     # input untouched


def test_apply_same_value_is_shared_without_conflict():
    obj = created()
    out = apply(obj, config(replicas=2), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert ".spec.replicas" in fields(out, "ssa")
    assert ".spec.replicas" in fields(out, "kubectl-create")      # co-owned


def test_two_appliers_share_then_one_lets_go():
    a = apply(None, config(replicas=2, paused=False), "a", schema=DEPLOYMENT,
              api_version="apps/v1", now=T0)
    b = apply(a, config(replicas=2), "b", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert ".spec.replicas" in fields(b, "a") and ".spec.replicas" in fields(b, "b")
    # a stops setting replicas: b still owns it, so it stays
    c = apply(b, config(paused=False), "a", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert c["spec"]["replicas"] == 2
    assert fields(c, "a") == {".spec.paused"}
    # another applier changing it conflicts with b, an applier: no "using"
    with pytest.raises(APIError) as e:
        apply(c, config(replicas=7), "z", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "b": .spec.replicas'


def test_apply_removes_fields_it_no_longer_sets():
    cfg = config(replicas=2, paused=True)
    cfg["metadata"]["labels"] = {"app": "web", "old": "x"}
    cfg["metadata"]["annotations"] = {"note": "n"}
    obj = apply(None, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T0)
    cfg2 = config(replicas=2)
    cfg2["metadata"]["labels"] = {"app": "web"}
    out = apply(obj, cfg2, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert "annotations" not in out["metadata"]     # emptied container dropped
    assert "paused" not in out["spec"]
    assert fields(out, "ssa") == {".spec.replicas", ".metadata.labels.app"}


def test_apply_keeps_fields_another_manager_owns():
    obj = apply(None, config(replicas=2, paused=True), "ssa", schema=DEPLOYMENT,
                api_version="apps/v1", now=T0)
    new = copy.deepcopy(obj)
    new["spec"]["minReadySeconds"] = 5
    obj = update_managed_fields(obj, new, "editor", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    obj = apply(obj, config(replicas=2, paused=True), "other", schema=DEPLOYMENT,
                api_version="apps/v1", now=T1)
    out = apply(obj, config(replicas=2), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert out["spec"]["paused"] is True            # "other" still applies it
    assert out["spec"]["minReadySeconds"] == 5      # never applied by ssa: untouched


def test_apply_list_map_merge_and_item_removal():
    cfg = config(template={"spec": {"containers": [
        {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "busybox"}]}})
    obj = apply(None, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T0)
    # another manager adds an env var and a container
    new = copy.deepcopy(obj)
    cs = new["spec"]["template"]["spec"]["containers"]
    cs[0]["env"].append({"name": "INJECTED", "value": "y"})
    cs.append({"name": "proxy", "image": "envoy"})
    obj = update_managed_fields(obj, new, "injector", api_version="apps/v1", now=T1,
                                schema=DEPLOYMENT)
    cfg2 = config(template={"spec": {"containers": [
        {"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}]}]}})
    out = apply(obj, cfg2, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["web", "proxy"]       # side pruned, proxy kept
    assert cs[0]["image"] == "nginx:2"
    assert [e["name"] for e in cs[0]["env"]] == ["A", "INJECTED"]
    assert 'k:{"name":"side"}' not in \
        entry(out, "ssa")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_apply_atomic_list_replaced_and_sets_merged():
    obj = created()
    new = copy.deepcopy(obj)
    new["metadata"]["finalizers"] = ["example.com/a"]
    obj = update_managed_fields(obj, new, "ctrl", api_version="apps/v1", now=T1, schema=DEPLOYMENT)
    cfg = config(template={"spec": {"containers": [{"name": "web", "args": ["--a"]}]}})
    cfg["metadata"]["finalizers"] = ["example.com/b"]
    out = apply(obj, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert out["metadata"]["finalizers"] == ["example.com/a", "example.com/b"]   # set: union
    assert '.metadata.finalizers[="example.com/b"]' in fields(out, "ssa")
    assert ".spec.template.spec.containers[name=\"web\"].args" in fields(out, "ssa")
    cfg["spec"]["template"]["spec"]["containers"][0]["args"] = ["--b"]
    # args (atomic) is co-owned with kubectl-create: changing it conflicts, even for ssa
    with pytest.raises(APIError) as e:
        apply(out, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert e.value.details["causes"][0]["field"] == '.spec.template.spec.containers[name="web"].args'
    out2 = apply(out, cfg, "ssa", force=True, schema=DEPLOYMENT, api_version="apps/v1", now=T2)
    assert out2["spec"]["template"]["spec"]["containers"][0]["args"] == ["--b"]
    assert ".spec.template.spec.containers[name=\"web\"].args" not in fields(out2, "kubectl-create")


def test_apply_on_object_without_managed_fields_uses_before_first_apply():
    live = deployment()
    with pytest.raises(APIError) as e:
        apply(live, config(replicas=4), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert e.value.message == ('Apply failed with 1 conflict: conflict with '
                               '"before-first-apply" using apps/v1: .spec.replicas')
    out = apply(live, config(replicas=2), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert {e["manager"] for e in entries(out)} == {"ssa", "before-first-apply"}


def test_apply_ignored_fields_and_nulls():
    cfg = config(replicas=1, paused=None)
    cfg["status"] = {"replicas": 9}
    out = apply(None, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T0,
                ignore_fields=["status"])
    assert "status" not in out and "paused" not in out["spec"]
    assert fields(out, "ssa") == {".spec.replicas"}


def test_apply_noop_keeps_time_and_change_bumps_it():
    obj = apply(None, config(replicas=1), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T0)
    same = apply(obj, config(replicas=1), "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert entry(same, "ssa")["time"] == T0
    changed = apply(obj, config(replicas=2), "ssa", schema=DEPLOYMENT, api_version="apps/v1",
                    now=T2)
    assert entry(changed, "ssa")["time"] == T2


def test_apply_keeps_live_only_fields_and_inputs():
    live = created()
    live0 = copy.deepcopy(live)
    cfg = config(paused=True)
    cfg0 = copy.deepcopy(cfg)
    out = apply(live, cfg, "ssa", schema=DEPLOYMENT, api_version="apps/v1", now=T1)
    assert out["spec"]["paused"] is True
    assert out["spec"]["template"] == live["spec"]["template"]
    assert out["metadata"]["uid"] == "u-1"
    assert live == live0 and cfg == cfg0


def test_apply_pod_ports_keyed_with_default_protocol():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i",
                                    "ports": [{"containerPort": 8080}]}]}}
    out = apply(None, pod, "ssa", schema=POD, api_version="v1", now=T0)
    f = entry(out, "ssa")["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"c"}']["f:ports"]
    assert list(f) == ['k:{"containerPort":8080,"protocol":"TCP"}']
