"""kubeplane.controllers: kube-controller-manager's controllers on kubeplane.client
(docs/controllers.md). It imports kubeplane.client (and the runtime helpers) only, so it
runs against any Kubernetes API server.

Modules: base (the Controller class: queue, workers, events), queue and metrics
(workqueue_* metrics, /metrics and /healthz), expectations, podutil (readiness,
owner references, deletion ranking), claims (adoption and release), one module per
controller (serviceaccount, rootca, replicaset, deployment + deployment_util), and
manager (`kubeplane controller-manager`: --controllers, leader election).
"""
