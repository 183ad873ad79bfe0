"""Roll a new model version out to a running TorchServe through its management API, and roll it back.

deploy:   package --checkpoint as the next version (or take a built --mar from the model store), register
          it beside the serving version with one worker, smoke-test it at /predictions/<name>/<version>
          (HTTP 200, the expected version, the same labels as the serving version), then make it the
          default. The old version stays registered, so rollback is instant. A failed smoke test
          unregisters the new version and leaves the default as it was.
rollback: make the previous version (or --to VERSION) the default again; --retire unregisters the
          version rolled back from.
status:   list the registered versions and which one is the default.

Registering needs the model API, which is off by default: start the server with
``python -m scripts.serve start --enable-model-api`` (``make serve SERVE_FLAGS=--enable-model-api``).
The management key is read from the run folder's key_file.json on every call.

  python -m scripts.rollout deploy --checkpoint runs/exp1
  python -m scripts.rollout rollback
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.project import MODEL_CONFIG, MODEL_NAME, RUN_DIR
from deepfake_service.serving.process import attach
from deepfake_service.serving.rollout import RolloutError, deploy, describe_decision, rollback, versions
from deepfake_service.serving.server import ServeError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {c: sub.add_parser(c) for c in ("deploy", "rollback", "status")}
    for command in commands.values():
        command.add_argument("--name", default=MODEL_NAME, help="model name (default: %(default)s)")
        command.add_argument("--run-dir", type=Path, default=RUN_DIR, help="the server's run folder (default: %(default)s)")
    up = commands["deploy"]
    source = up.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint folder to package as the next version")
    source.add_argument("--mar", help="an archive already in the server's model store, e.g. deepfake-detector-v2.mar")
    up.add_argument("--version", help="version for --checkpoint (default: next major, e.g. 1.0 -> 2.0)")
    up.add_argument("--model-config", type=Path, default=MODEL_CONFIG, help="for --checkpoint (default: %(default)s)")
    up.add_argument("--smoke-image", type=Path, help="image for the smoke test (default: a generated gradient)")
    back = commands["rollback"]
    back.add_argument("--to", help="version to make default (default: the newest one older than the current default)")
    back.add_argument("--retire", action="store_true", help="also unregister the version rolled back from")
    args = parser.parse_args(argv)
    try:
        server = attach(args.run_dir)
        if args.command == "deploy":
            image = args.smoke_image.read_bytes() if args.smoke_image else None
            new = deploy(server, args.name, checkpoint=args.checkpoint, mar=args.mar, version=args.version,
                         model_config=args.model_config, image=image)
            print(f"{args.name} {new.version} passed its smoke test and is now the default")
            print(f"  smoke answer: {new.smoke['label']} ({new.smoke['confidence']:.4f}), verdict {new.smoke.get('verdict')}")
            print(f"  decision: {describe_decision(new.smoke.get('decision') or {})}")
        elif args.command == "rollback":
            print(f"{args.name} {rollback(server, args.name, args.to, args.retire)} is the default again")
        state = versions(server, args.name)
        for version in state.registered:
            print(f"  {version}{'  (default)' if version == state.default else ''}")
    except (RolloutError, ServeError, OSError) as exc:
        sys.exit(f"rollout: {exc}")


if __name__ == "__main__":
    main()
