# The two quick-start commands.  Each sets up what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: serve test bench venv

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/kubeplane serve $(ARGS)

test: $(STAMP)
	scripts/ensure-etcd
	scripts/ensure-prometheus
	$(PY) -m pytest -q $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	scripts/ensure-debs etcd=etcd-server etcdctl=etcd-client wrk=wrk
	$(PY) -m bench $(ARGS)
