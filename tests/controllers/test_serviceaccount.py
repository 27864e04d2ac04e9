"""Every namespace gets its `default` ServiceAccount and its `kube-root-ca.crt`
ConfigMap holding the cluster CA (the one in the kubeconfig); both come back when
deleted, and the ConfigMap's data is put back when edited."""
from __future__ import annotations

import base64

import yaml

from ctrl_cluster import get, new_namespace, wait_for


def test_default_service_account_and_root_ca(cluster):
    with open(cluster.kubeconfig) as f:
        kc = yaml.safe_load(f)
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    assert "BEGIN CERTIFICATE" in ca
    ns = new_namespace(cluster, "sa")
    sa_path = f"/api/v1/namespaces/{ns}/serviceaccounts/default"
    cm_path = f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"
    wait_for(lambda: get(cluster, sa_path), 20, what="default ServiceAccount")
    cm = wait_for(lambda: get(cluster, cm_path), 20, what="kube-root-ca.crt")
    assert cm["data"] == {"ca.crt": ca}
    assert "kubernetes.io/description" in cm["metadata"]["annotations"]
    # the namespaces that existed before the controller manager started have them too
    for existing in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert get(cluster, f"/api/v1/namespaces/{existing}/serviceaccounts/default"), existing
        assert get(cluster, f"/api/v1/namespaces/{existing}/configmaps/kube-root-ca.crt"), existing

    assert cluster.call("DELETE", sa_path).status == 200
    wait_for(lambda: (get(cluster, sa_path) or {}).get("metadata", {}).get("uid") not in (None,), 20,
             what="default ServiceAccount recreated")
    r = cluster.call("PATCH", cm_path, {"data": {"ca.crt": "tampered"}}, content_type="application/merge-patch+json")
    assert r.status == 200
    wait_for(lambda: get(cluster, cm_path)["data"] == {"ca.crt": ca}, 20, what="kube-root-ca.crt restored")
    old_uid = cm["metadata"]["uid"]
    assert cluster.call("DELETE", cm_path).status == 200
    wait_for(lambda: (get(cluster, cm_path) or {}).get("metadata", {}).get("uid") not in (None, old_uid), 20,
             what="kube-root-ca.crt recreated")
