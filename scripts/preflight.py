"""Check, in seconds, that this machine has what `make serve` or `make test` needs: Python 3.11 with
venv, a Java TorchServe 0.12 accepts (17+), disk space, and for serve the free ports. Prints one line
per missing thing with the command that fixes it, and exits 1; prints nothing and exits 0 when all is
there. Runs on the system Python, before the virtual environment exists.

  python3 -m scripts.preflight serve
  python3 -m scripts.preflight test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.project import CONFIG_PROPERTIES, PAGE_PORT
from deepfake_service.serving.preflight import problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=["serve", "test"], help="what is about to run")
    parser.add_argument("--config", type=Path, default=CONFIG_PROPERTIES, help="TorchServe config whose ports serve needs (default: %(default)s)")
    parser.add_argument("--page-port", type=int, default=PAGE_PORT, help="upload page port; 0: none (default: %(default)s)")
    args = parser.parse_args(argv)
    found = problems(args.target, args.config, args.page_port)
    for line in found:
        print(f"preflight: {line}", file=sys.stderr)
    if found:
        sys.exit(1)


if __name__ == "__main__":
    main()
