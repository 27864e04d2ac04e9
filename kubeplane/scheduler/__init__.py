"""kubeplane's scheduler: kube-scheduler's model (queue, cache, filter/score plugins,
preemption, asynchronous binding through pods/binding) in Python, talking to any
Kubernetes API server through kubeplane.client. See docs/scheduler.md.

Layout: resources/podinfo (pod and node facts; selectors and tolerations come from kubeplane.client.selectors), framework (Status, CycleState,
Plugin), plugins/ (one module per plugin), cache, queue, algorithm (one cycle), preemption,
messages, metrics, scheduler (the loop), app (informers + the API), cli entry in
kubeplane.cli (`kubeplane scheduler`).
"""
