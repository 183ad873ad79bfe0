"""Convert a HF ViT checkpoint to an OpenVINO IR (``openvino_model.xml`` + ``.bin``), dynamic batch axis.

Runs at packaging time; the worker only reads the IR. Weights stay fp32 in the IR: bf16 is chosen when
the worker compiles the model (``INFERENCE_PRECISION_HINT``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfake_service.packaging.openvino import convert_to_openvino
from deepfake_service.project import DEMO_CHECKPOINT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="HF checkpoint folder (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="folder for the IR (default: the checkpoint folder)")
    args = parser.parse_args(argv)
    print(f"wrote {convert_to_openvino(args.checkpoint, args.output or args.checkpoint)}")


if __name__ == "__main__":
    main()
