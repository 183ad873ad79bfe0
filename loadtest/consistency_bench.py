"""What the opt-in consistency check costs (handler option ``consistency_check``: each image's crops are
classified again as a JPEG-q75 copy at the model's input size): batches of 8 photos (the astronaut at
1024x768, one face, and the same photo whole with faces off) through the core in-process, shipped handler
settings, with the check off and on. Median milliseconds per image over the repeats, and the ratio. Prints
figures and writes results/consistency/consistency.csv; it asserts nothing.

  python -m loadtest.consistency_bench --checkpoint checkpoints/demo
"""

from __future__ import annotations

import dataclasses

from PIL import Image
from skimage import data as photos

from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.project import handler_options
from deepfake_service.samples import imagegen
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from loadtest.harness import announce_cpu, bench_parser, median_ms, write_csv

BATCH = 8


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "consistency", 10, "batch")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    cpu = announce_cpu()
    photo = imagegen.photo_jpeg(Image.fromarray(photos.astronaut()).resize((1024, 768)), quality=90)
    shipped = with_detector_file(handler_options(), args.checkpoint)
    rows = []
    for mode in ("auto", "off"):
        timings = {}
        for check in (False, True):
            classifier = DeepfakeClassifier.from_checkpoint(args.checkpoint, dataclasses.replace(shipped, consistency_check=check))
            requests = [Request(photo, mode)] * BATCH
            classifier.predict_batch(requests)  # warm-up (and the runtime probe)
            timings[check] = median_ms(lambda: classifier.predict_batch(requests), args.repeats)[0] / 1000 / BATCH
        row = {"faces": mode, "runtime": f"{classifier.runtime.name} {classifier.runtime.precision}",
               "ms_per_image_off": round(1000 * timings[False], 1), "ms_per_image_on": round(1000 * timings[True], 1),
               "ratio": round(timings[True] / timings[False], 2)}
        rows.append(row)
        print(f"  faces {mode}: {row['ms_per_image_off']} ms/image without the check, {row['ms_per_image_on']} ms with it "
              f"(x{row['ratio']}; {row['runtime']}; {cpu['model']})", flush=True)
    write_csv(rows, args.output / "consistency.csv")
    print(f"wrote {args.output}/consistency.csv")


if __name__ == "__main__":
    main()
