"""Package a checkpoint folder and the handler into a TorchServe model archive (.mar).

The archive holds handler/ (the inference core and adapter), checkpoint/ (config.json,
preprocessor_config.json, *.safetensors, and openvino_model.xml/.bin when the handler section of
model-config.yaml picks the openvino runtime or auto) and model-config.yaml (workers, batching, handler options).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.packaging.archive import BuildError, Int8Inputs, build_mar
from deepfake_service.project import DEMO_CHECKPOINT, MODEL_CONFIG, MODEL_NAME, MODEL_STORE, MODEL_VERSION


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="HF checkpoint folder (default: %(default)s)")
    parser.add_argument("--name", default=MODEL_NAME, help="model name served at /predictions/<name> (default: %(default)s)")
    parser.add_argument("--version", default=MODEL_VERSION, help="model version (default: %(default)s)")
    parser.add_argument("--model-config", type=Path, default=MODEL_CONFIG, help="model-config.yaml to pack (default: %(default)s)")
    parser.add_argument("--export-dir", type=Path, default=MODEL_STORE, help="where the .mar goes (default: %(default)s)")
    parser.add_argument("--mar-name", help="archive file name without .mar (default: the model name); e.g. deepfake-detector-v2")
    parser.add_argument("--calibration", type=Path, help="int8 (openvino): folder of calibration images, or a split CSV such as "
                        "<run>/splits/train.csv")
    parser.add_argument("--validation", type=Path, help="int8: labelled folder <label>/* or a split CSV such as <run>/splits/test.csv; "
                        "the build fails when int8 "
                        "agrees with fp32 on < 99.5 %% of it or loses > 0.3 accuracy points")
    parser.add_argument("--unvalidated-int8", action="store_true", help="int8 without the gate, for timing only; answers say int8-unvalidated")
    args = parser.parse_args(argv)
    try:
        path = build_mar(
            args.checkpoint,
            args.name,
            args.version,
            model_config=args.model_config,
            export_dir=args.export_dir,
            mar_name=args.mar_name,
            int8=Int8Inputs(args.calibration, args.validation, args.unvalidated_int8),
        )
    except BuildError as exc:
        sys.exit(f"error: {exc}")
    print(f"built {path} (model {args.name}, version {args.version})")


if __name__ == "__main__":
    main()
