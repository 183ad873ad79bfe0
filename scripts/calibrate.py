"""Set the operating point of a checkpoint from a labelled calibration set: temperature scaling, a fake
threshold for a target false-positive rate on real images, and an uncertain band below it.

The calibration set must be neither the training nor the test split: ``python -m scripts.train
--calibration-size 0.2`` writes one (``<run>/splits/calibration.csv``) and calibrates on it by itself.
Writes ``decision.json`` into the checkpoint folder (or --output); ``build_mar`` packs it and the served
answers then carry calibrated probabilities, a ``verdict`` (real | fake | uncertain) and the ``decision``.
The rule is in handler/decision.py and docs/api.md.

The calibration set is classified in the face mode the model serves (--model-config's face_mode, the
shipped config/model-config.yaml by default) unless --face-mode says otherwise, and decision.json records
it: thresholds hold for the kind of input they were fitted on, and a server in another mode says so.

  python -m scripts.calibrate --checkpoint runs/exp1 --data runs/exp1/splits/calibration.csv
  python -m scripts.calibrate --checkpoint runs/exp1 --data my-calibration-set/ --target-fpr 0.005 --uncertain-fpr 0.02

Or from what reviewers labelled (docs/records.md): ``--records`` takes the image records answered by the
--checkpoint's own weights (their SHA-256 is in each record) whose latest label is real or fake, with the raw
logits each record kept; nothing is classified again. Records do not keep the face mode their request
asked for, but what they classified (face crops or the whole image, and whether a face search ran): only
those whose deciding subject is what the face mode classifies are taken (docs/training.md). It also prints
how the served verdicts agreed with the reviewers. ``--version`` narrows it to one served version.

  python -m scripts.calibrate --checkpoint checkpoints/mine --records
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from deepfake_service.dataset import DatasetError, load_samples
from deepfake_service.project import handler_options
from deepfake_service.records import read_settings, redacted
from deepfake_service.records.review import ReviewError, labelled_set
from deepfake_service.training.calibration import CalibrationError, write_decision
from deepfake_service.training.evaluate import EvaluationError
from deepfake_service.training.operating_point import calibrate, calibrate_from_records
from deepfake_service.training.predictors import add_predictor_arguments, predictor_from_args, served_face_mode
from handler.checkpoint import weight_files
from handler.recorder import weights_sha256
from handler.store import connect


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode=None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="labelled folder or split CSV (path,label): the calibration set")
    source.add_argument("--records", nargs="?", const="", metavar="URL",
                        help="labelled image records of --checkpoint's weights (and --version when given; default store: config/records.yaml)")
    parser.add_argument("--target-fpr", type=float, default=0.01, help="share of real images the fake verdict may flag (default: %(default)s)")
    parser.add_argument("--uncertain-fpr", type=float, default=0.05,
                        help="the looser target whose threshold starts the uncertain band (default: %(default)s)")
    parser.add_argument("--fake-label", help="the label meaning fake (default: the model config's fake_label)")
    parser.add_argument("--output", type=Path, help="folder for decision.json (default: the --checkpoint folder)")
    args = parser.parse_args(argv)
    output = args.output or args.checkpoint
    if output is None:
        parser.error("--output is needed with --endpoint (the checkpoint folder you will package)")
    fake_label = args.fake_label or handler_options(args.model_config).fake_label
    args.face_mode = served_face_mode(args)
    try:
        if args.records is not None:
            if args.checkpoint is None:
                parser.error("--records needs --checkpoint: the records of that checkpoint's weights calibrate it")
            url = args.records or read_settings().url
            weights = weights_sha256(weight_files(args.checkpoint))
            labelled = labelled_set(connect(url), fake_label, version=args.version, weights=weights, face_mode=args.face_mode)
            decision, described = calibrate_from_records(labelled, fake_label, args.target_fpr, args.uncertain_fpr,
                                                         f"records of weights {weights[:12]} at {redacted(url)}")
            print(json.dumps({"review": described["review"]}))
        else:
            samples = load_samples(args.data)
            decision, described = calibrate(predictor_from_args(args), samples, args.data, fake_label, args.target_fpr,
                                            args.uncertain_fpr, args.batch_size, not args.no_progress)
    except (DatasetError, EvaluationError, CalibrationError, ReviewError) as exc:
        sys.exit(f"calibrate: {exc}")
    except SQLAlchemyError as exc:
        sys.exit(f"calibrate: the record store failed: {type(exc).__name__}")
    output.mkdir(parents=True, exist_ok=True)
    path = write_decision(decision, described, output)
    fake, uncertain = decision["achieved"]["fake"], decision["achieved"]["uncertain"]
    print(f"fitted in face mode {decision['face_mode']} (what a server answering in another mode flags)")
    print(f"temperature {decision['temperature']:.4f}: NLL {decision['nll']['before']:.4f} -> {decision['nll']['after']:.4f}, "
          f"ECE {decision['ece']['before']:.4f} -> {decision['ece']['after']:.4f} on {described['classified']} images")
    print(f"fake      if P({fake_label}) >= {decision['thresholds']['fake']:.6f}: FPR {fake['fpr']:.4f} (target "
          f"{args.target_fpr}), TPR {fake['tpr']:.4f}")
    print(f"uncertain if P({fake_label}) >= {decision['thresholds']['uncertain']:.6f}: FPR {uncertain['fpr']:.4f} (target "
          f"{args.uncertain_fpr}), TPR {uncertain['tpr']:.4f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
