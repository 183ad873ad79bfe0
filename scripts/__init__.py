"""Command-line tools: build, fetch, package and serve checkpoints (each module has ``--help``)."""
