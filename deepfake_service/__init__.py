"""The deepfake detection service's libraries: project names and paths (``project``), datasets, and the
jobs around the core in ``handler/``: ``packaging`` (archives), ``serving`` (TorchServe processes, rollout,
probes), ``training`` (train, calibrate, evaluate, score) and ``samples`` (generated media for tests and
benchmarks). Commands in ``scripts/`` are thin over these; nothing here imports a command, ``page/``,
``loadtest/`` or ``tests/``."""
