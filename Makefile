# The two commands of the README: `make run` (demo) and `make test` (whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv run test lint typecheck image test-image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# ngh2 first, built from its sdist with libnghttp2's per-field header limit raised
# (scripts/ngh2-wheel.sh says why); kept in build/ngh2 between runs.
NGH2_WHEELS ?= build/ngh2

venv: $(BIN)/python
	$(BIN)/pip install -q "$$(bash scripts/ngh2-wheel.sh $(BIN)/python $(NGH2_WHEELS))"
	$(BIN)/pip install -q -e '.[test]'

# A simulated cluster, the gateway (standalone) in front of it, and the kubectl commands to try.
run: venv
	$(BIN)/python scripts/demo.py

# Lint and strict type check first (seconds), then the whole suite, then the container image
# and its tests (tests/image), then deploy/ rendered and validated (tests/deploy, in the suite).
test: venv
	bash scripts/test-deps.sh
	$(BIN)/ruff check src tests
	$(BIN)/mypy src/clustergateway
	$(BIN)/python -m pytest tests -m "not image"
	$(MAKE) test-image

# The container image (Dockerfile) from Debian's packages and PyPI; scripts/image.sh says how.
image:
	bash scripts/image.sh

test-image: venv image
	$(BIN)/python -m pytest tests/image -m image

# The unit suite against the newest releases of the libraries whose private names the
# gateway uses (clustergateway.fence), past the upper bounds of pyproject.toml: the
# project is installed as pinned, then those libraries are upgraded together (pip
# resolves them against each other, not against our bounds, and reports the clash).
# CI runs it after `make test`, allowed to fail (.ci/run), so a break is seen before
# users see it.  Its own venv, kept between runs.
LATEST_VENV ?= .venv-latest
FENCED_LIBRARIES := 'twisted[tls,http2,websocket]' pyopenssl cryptography prometheus-client \
	h2 hyperframe

.PHONY: test-latest
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip
	$(LATEST_VENV)/bin/pip install -q "$$(bash scripts/ngh2-wheel.sh $(LATEST_VENV)/bin/python $(NGH2_WHEELS))"
	$(LATEST_VENV)/bin/pip install -q -e '.[test]'
	$(LATEST_VENV)/bin/pip install -q --upgrade $(FENCED_LIBRARIES)
	@$(LATEST_VENV)/bin/python -c 'from importlib.metadata import version; \
	names = ("twisted", "pyopenssl", "cryptography", "prometheus-client", "h2", "hyperframe"); \
	print("test-latest: " + ", ".join(f"{n} {version(n)}" for n in names))'
	$(LATEST_VENV)/bin/python -m pytest tests/unit -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/mypy src/clustergateway

# mypy --strict with the zope plugin (config in pyproject.toml).
typecheck: venv
	$(BIN)/mypy src/clustergateway

# Side-by-side load runs (bench/README.md): direct vs kubectl proxy vs the Go proxy vs the gateway.
.PHONY: bench bench-quick bench-soak
bench: venv
	bash scripts/bench-deps.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: venv
	bash scripts/bench-deps.sh
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# Ten minutes of mixed load after 10,000 hostile requests: is the gateway flat? (bench/soak.py)
bench-soak: venv
	bash scripts/bench-deps.sh
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
