"""int8 only where it is proven: post-training quantization and the validation gate.

``quantize_openvino`` quantizes the OpenVINO IR with NNCF on calibration images (a folder, or the
training command's ``splits/train.csv``). ``validate_int8`` compares an int8 runtime with torch fp32 on
labelled images (``root/<label>/*`` or ``splits/test.csv``; label names from the checkpoint's
config.id2label) and ``check_gate`` refuses the result when the
argmax agreement is below 99.5 % or accuracy drops by more than 0.3 points. The verdict is written to
``quantization.json`` beside the weights, where the worker reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from deepfake_service.packaging.quantize import QuantizationError, prepare_int8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (with openvino_model.xml for openvino)")
    parser.add_argument("--runtime", choices=["torch", "openvino"], required=True)
    parser.add_argument("--calibration", type=Path, help="folder of calibration images or a split CSV (openvino)")
    parser.add_argument("--validation", type=Path, help="labelled folder <label>/* or a split CSV for the gate")
    parser.add_argument("--unvalidated-int8", action="store_true", help="skip the gate; answers will say int8-unvalidated")
    args = parser.parse_args(argv)
    try:
        report = prepare_int8(args.checkpoint, args.runtime, args.calibration, args.validation, args.unvalidated_int8)
    except QuantizationError as exc:
        sys.exit(f"error: {exc}")
    print(json.dumps(asdict(report)))


if __name__ == "__main__":
    main()
