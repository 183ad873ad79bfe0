"""Start, stop, probe and query the local TorchServe (and the upload page beside it).

``start`` launches TorchServe in the background (working folder: the run folder, which receives logs/
and the token file key_file.json), waits until /ping is healthy and every model has a READY worker,
starts the upload page, prints the URLs and a curl example, and returns. It fails loudly, with the end
of the logs and everything stopped, when that does not happen within the timeout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.project import CONFIG_PROPERTIES, MODEL_NAME, MODEL_STORE, PAGE_HOST, PAGE_PORT, RUN_DIR
from deepfake_service.records import read_settings, shared_store
from deepfake_service.serving.probe import probe
from deepfake_service.serving.server import ServeError, read_keys
from deepfake_service.serving.stack import StackSettings, run_stack, start_stack, stop_stack
from page.lifecycle import UploadPage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start", help="start TorchServe in the background and wait until the models are ready")
    fg = sub.add_parser("run", help="start, wait until ready, and serve in the foreground; SIGTERM drains, then stops")
    for command in (up, fg):
        command.add_argument("--config", type=Path, default=CONFIG_PROPERTIES, help="config.properties (default: %(default)s)")
        command.add_argument("--model-store", type=Path, default=MODEL_STORE, help="folder of .mar files (default: %(default)s)")
        command.add_argument("--model", action="append", dest="models", metavar="NAME=FILE.mar",
                             help=f"model to load (repeatable; default: {MODEL_NAME}={MODEL_NAME}.mar)")
        command.add_argument("--snapshot", action="store_true",
                             help="load what the config's model_snapshot lists instead of --model (the KServe layout: scripts.kserve_layout)")
        command.add_argument("--run-dir", type=Path, default=RUN_DIR, help="working folder for logs and key_file.json (default: %(default)s)")
        command.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness (default: %(default)s)")
        command.add_argument("--page-port", type=int, default=PAGE_PORT, help="upload page port; 0: no page (default: %(default)s)")
        command.add_argument("--page-host", default=PAGE_HOST, help="upload page address; beyond loopback it needs "
                                                                    "--page-token-file or --page-identity-header (default: %(default)s)")
        command.add_argument("--page-token-file", type=Path, help="file holding the page token users enter once")
        command.add_argument("--page-identity-header", help="identity header set by an authenticating proxy in front of the page")
        command.add_argument("--page-reviewers", help="comma-separated identities (from the identity header) who may review records")
        command.add_argument("--shared-records", action="store_true",
                             help="refuse to start on a SQLite record store: one of several replicas needs a shared database")
        command.add_argument("--enable-model-api", action="store_true",
                             help="allow registering and unregistering model versions (needed by scripts.rollout); off by default")
    for name, text in (("stop", "stop the page and the TorchServe started from the run folder"),
                       ("probe", "exit 0 when healthy (container and Kubernetes probes)"), ("key", "print the current token")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--run-dir", type=Path, default=RUN_DIR, help="(default: %(default)s)")
    sub.choices["probe"].add_argument("--readiness", action="store_true", help="also fail while draining (after the preStop hook)")
    sub.choices["key"].add_argument("--kind", default="inference", choices=["inference", "management", "API"])
    args = parser.parse_args(argv)
    if getattr(args, "snapshot", False) and args.models:
        parser.error("--snapshot loads what the config lists; leave out --model")
    try:
        if args.command in ("start", "run"):
            if args.shared_records:
                shared_store(read_settings())
            page_options = [*(["--token-file", str(args.page_token_file)] if args.page_token_file else []),
                            *(["--identity-header", args.page_identity_header] if args.page_identity_header else []),
                            *(["--reviewers", args.page_reviewers] if args.page_reviewers else [])]
            models = [] if args.snapshot else args.models or StackSettings().models
            settings = StackSettings(args.config, args.model_store, models, args.run_dir,
                                     args.timeout, args.enable_model_api)
            page = [UploadPage(args.page_port, args.page_host, page_options)] if args.page_port else []
            if args.command == "start":
                start_stack(settings, page)
            else:
                sys.exit(run_stack(settings, page))
        elif args.command == "probe":
            problem = probe(args.run_dir, args.readiness)
            if problem:
                sys.exit(f"unhealthy: {problem}")
        elif args.command == "stop":
            stopped = stop_stack(args.run_dir, [UploadPage(PAGE_PORT)])
            print("TorchServe stopped" if stopped else "TorchServe was not running")
        else:
            print(read_keys(args.run_dir.resolve())[args.kind])
    except (ServeError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
