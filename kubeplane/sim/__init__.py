"""Simulated cluster parts that talk to the API server over HTTP only (hollow nodes, their
kubelet API). Nothing here imports kubeplane.apiserver (tests/test_layout.py)."""
