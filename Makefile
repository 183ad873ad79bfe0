# The two commands: `make serve` and `make test`. Everything else is a step they use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL_NAME := deepfake-detector
CHECKPOINT := checkpoints/demo
MAR := model_store/$(MODEL_NAME).mar
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: serve stop test bench bench-faces soak venv demo-checkpoint mar key clean

# SERVE_FLAGS=--enable-model-api lets scripts.rollout register new versions.
SERVE_FLAGS ?=
serve: $(MAR)
	$(PY) -m scripts.serve start --model $(MODEL_NAME)=$(MODEL_NAME).mar $(SERVE_FLAGS)

stop: venv
	$(PY) -m scripts.serve stop   # the upload page too

test: venv $(CHROMIUM)
	$(PY) -m pytest

# The browser tests drive Debian's Chromium; installed here when missing (needs root or sudo).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# Prints figures and writes results/bench/*.csv, *.png; asserts nothing. Takes about 15 minutes.
bench: $(CHECKPOINT)/model.safetensors | venv
	$(PY) -m loadtest.bench --checkpoint $(CHECKPOINT) --output results/bench

# Face stage cost per photo and end-to-end throughput with faces on vs off; writes results/faces. ~3 minutes.
bench-faces: $(CHECKPOINT)/model.safetensors | venv
	$(PY) -m loadtest.faces_bench --checkpoint $(CHECKPOINT) --output results/faces

# Steady Locust load on the built archive with memory and error sampling; not a test.
SOAK_MINUTES ?= 10
soak: $(MAR)
	$(PY) -m loadtest.soak --minutes $(SOAK_MINUTES) --output results/soak

key: venv
	@$(PY) -m scripts.serve key

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt '.[quantize,train,grpc,test]'
	touch $@

demo-checkpoint: $(CHECKPOINT)/model.safetensors

$(CHECKPOINT)/model.safetensors: | venv
	$(PY) -m scripts.demo_checkpoint --output $(CHECKPOINT)

mar: $(MAR)

$(MAR): $(CHECKPOINT)/model.safetensors $(wildcard handler/*.py) config/model-config.yaml | venv
	$(PY) -m scripts.build_mar --checkpoint $(CHECKPOINT) --name $(MODEL_NAME)

clean:
	rm -rf $(VENV) checkpoints run results build *.egg-info
	find model_store -name '*.mar' -delete
