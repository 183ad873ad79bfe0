"""What the face stage finds and costs: recall and false boxes per detector on the generated face set,
ms per image in-process, and end-to-end throughput with faces on vs off.

Recall: each detector (haar, blazeface; yunet when its file is in the checkpoint folder) on
deepfake_service/samples/faceset.py's cases (rotations, small faces in large frames, a group, a 4K frame,
a dark JPEG, face-free photos): faces found (IoU >= 0.3), false boxes, median ms.
As served: the same cases, and small faces in 4K and 4000x3000 frames, as JPEGs through the shipped
decode (large photos are decoded at a quarter), with the smallest face each answer reports searching for.
In-process: decode (shipped limits, JPEG draft included), the shipped detector and cropping, timed apart,
on small and large photos built from scikit-image's public-domain astronaut (one face) and coffee (none).
End to end: the shipped archive (config/model-config.yaml) of --checkpoint behind a real TorchServe,
Locust sending those photos with X-Face-Mode auto and off, in alternating rounds, each round's ratio. Prints figures and writes
results/faces/faces.csv, e2e.csv, faces.json and faces.png; it asserts nothing.

  python -m loadtest.faces_bench --checkpoint checkpoints/demo      (make bench-faces)
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from PIL import Image

from deepfake_service.packaging.face_detector import detector_file
from deepfake_service.project import handler_options
from deepfake_service.samples.faceset import face_cases, faces_in_frame, matched, size_sweep
from handler.detectors import YUNET_FILE, create_detector
from handler.faces import FaceDetector, FaceSearch, detection_scale, square_crop
from handler.hardware import cpu_description
from handler.images import decode
from handler.options import HandlerOptions
from loadtest.harness import announce_cpu, bench_parser, built_server, locust_row, median_ms, save_figure, write_csv


def photo_set() -> dict[str, bytes]:
    """name -> JPEG bytes: one-face, two-face and face-free photos, small and large."""
    from skimage import data as photos

    astronaut, coffee = Image.fromarray(photos.astronaut()), Image.fromarray(photos.coffee())
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    images = {
        "astronaut 512x512 (1 face)": astronaut,
        "pair 1024x512 (2 faces)": pair,
        "coffee 600x400 (0 faces)": coffee,
        "astronaut 3000x3000 (1 face)": astronaut.resize((3000, 3000), Image.Resampling.BICUBIC),
        "pair 4000x2000 (2 faces)": pair.resize((4000, 2000), Image.Resampling.BICUBIC),
        "coffee 4500x3000 (0 faces)": coffee.resize((4500, 3000), Image.Resampling.BICUBIC),
    }
    encoded = {}
    for name, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        encoded[name] = buffer.getvalue()
    return encoded


def yunet_file(options: HandlerOptions, checkpoint: Path) -> Path:
    return checkpoint / (options.face_model or YUNET_FILE)


def detector_for(name: str, options: HandlerOptions, checkpoint: Path) -> FaceDetector:
    """Detector ``name`` with the shipped sizes; its file found as an archive build finds it."""
    chosen = replace(options, face_detector=name, face_model=yunet_file(options, checkpoint).name if name == "yunet" else "")
    return create_detector(name, detector_file(checkpoint, chosen), options.face_detect_side, options.face_min_size)


def recall(options: HandlerOptions, checkpoint: Path, repeats: int) -> list[dict]:
    """Per detector and case: faces found, false boxes and median ms on the generated face set and the
    size sweep (one face of 40-400 px per frame)."""
    names = ["haar", "blazeface"] + (["yunet"] if yunet_file(options, checkpoint).is_file() else [])
    cases, rows = face_cases() + size_sweep(), []
    for name in names:
        detector = detector_for(name, options, checkpoint)
        for case in cases:
            detector.detect(case.image)  # warm-up
            ms, found = median_ms(lambda: detector.detect(case.image), max(1, repeats // 4))
            hits, false = matched(found, case.faces)
            rows.append({"detector": name, "case": case.name, "kind": case.kind, "size": "x".join(map(str, case.image.size)),
                         "faces": len(case.faces), "found": hits, "false_boxes": false, "ms": round(ms, 1)})
        mine = [r for r in rows if r["detector"] == name]
        print(f"  {name:9s} found {sum(r['found'] for r in mine)}/{sum(r['faces'] for r in mine)} faces, "
              f"{sum(r['false_boxes'] for r in mine)} false boxes, median of per-case ms "
              f"{statistics.median(r['ms'] for r in mine):.1f}", flush=True)
    return rows


SERVED_SWEEP = (40, 48, 56, 64, 80, 120)
SERVED_FRAMES = ((3840, 2160), (4000, 3000))


def served_recall(options: HandlerOptions, checkpoint: Path, places: int = 3) -> list[dict]:
    """The shipped detector as served: each case of the face set, and faces of SERVED_SWEEP pixels at
    ``places`` seeded places in 4K and 4000x3000 frames, sent as quality-92 JPEGs through the shipped
    decode (``jpeg_draft_side`` included, so large photos are searched at a quarter of their size); faces
    found, false boxes and the ``smallest_face`` the answer reports."""
    import random

    from deepfake_service.samples.imagegen import encode

    detector = detector_for(options.face_detector, options, checkpoint)
    cases = face_cases()
    for frame in SERVED_FRAMES:
        for face in SERVED_SWEEP:
            for k in range(places):
                draw = random.Random(f"served {frame} {face} {k}")
                at = (draw.randrange(0, frame[0] - 4 * face), draw.randrange(0, frame[1] - 4 * face))
                cases.append(faces_in_frame(frame, [(face, at)], f"a {face}-px face in a {frame[0]}x{frame[1]} JPEG #{k + 1}", "served sweep"))
    rows = []
    for case in cases:
        decoded = decode(encode(case.image, "JPEG", quality=92), options.limits)
        sx, sy = decoded.scale
        found = [box.scaled(sx, sy) for box in detector.detect(decoded.image, detection_scale(decoded))]
        hits, false = matched(found, case.faces)
        rows.append({"detector": detector.name, "case": case.name, "kind": case.kind, "size": "x".join(map(str, case.image.size)),
                     "decoded": "x".join(map(str, decoded.image.size)), "faces": len(case.faces), "found": hits, "false_boxes": false,
                     "smallest_face": FaceSearch.of(detector, decoded.image.size, detection_scale(decoded)).smallest_face})
    for kind in dict.fromkeys(row["kind"] for row in rows):
        mine = [row for row in rows if row["kind"] == kind]
        print(f"  {kind:12s} found {sum(r['found'] for r in mine)}/{sum(r['faces'] for r in mine)}, "
              f"{sum(r['false_boxes'] for r in mine)} false boxes, smallest_face {sorted({r['smallest_face'] for r in mine})}", flush=True)
    for face in SERVED_SWEEP:
        mine = [row for row in rows if row["kind"] == "served sweep" and row["case"].startswith(f"a {face}-px")]
        print(f"    {face:3d}-px faces in 4K / 4000x3000 JPEGs: {sum(r['found'] for r in mine)}/{len(mine)}", flush=True)
    return rows


def face_stage_costs(photos: dict[str, bytes], options: HandlerOptions, repeats: int, checkpoint: Path) -> list[dict]:
    """Median ms per photo for decode, detection and cropping with the shipped options."""
    detector = detector_for(options.face_detector, options, checkpoint)
    rows = []
    for name, payload in photos.items():
        decode_ms, decoded = median_ms(lambda: decode(payload, options.limits), repeats)
        # as the handler calls it (handler/image_media.py:ImageMedia._faces): face_min_size stays in original pixels
        detect_ms, boxes = median_ms(lambda: detector.detect(decoded.image, detection_scale(decoded)), repeats)
        crop_ms, _ = median_ms(lambda: [square_crop(decoded.image, b, options.face_margin) for b in boxes], repeats)
        rows.append({
            "photo": name, "bytes": len(payload), "decoded": "x".join(map(str, decoded.image.size)), "faces": len(boxes),
            "decode_ms": round(decode_ms, 2), "detect_ms": round(detect_ms, 2), "crop_ms": round(crop_ms, 3),
            "face_stage_ms": round(detect_ms + crop_ms, 2),
        })
        print(f"  {name:30s} decoded {rows[-1]['decoded']:>9s}  faces {len(boxes)}  decode {decode_ms:6.1f} ms  "
              f"detect {detect_ms:6.1f} ms  crop {crop_ms:5.2f} ms", flush=True)
    return rows


def end_to_end(checkpoint: Path, photos: dict[str, bytes], users: int, seconds: int, rounds: int, workdir: Path) -> list[dict]:
    """The shipped archive under Locust, the same photos with faces on (auto) and off, in ``rounds``
    rounds of both (the order alternating, so a drift of the CPU's speed weighs on both modes about alike); each
    row has its round and, on the auto row, that round's auto/off ratio."""
    images = workdir / "photos"
    images.mkdir()
    for index, payload in enumerate(photos.values()):
        (images / f"{index}.jpg").write_bytes(payload)
    rows = []
    with built_server(workdir, checkpoint) as server:
        for mode in ("auto", "off"):  # warm-up of both paths (the detector loads on first use), not reported
            locust_row(server, users, max(1, min(seconds, 10) // 2), images, workdir, mode)
        for round_ in range(1, rounds + 1):
            found = {}
            for mode in ("auto", "off") if round_ % 2 else ("off", "auto"):
                found[mode] = {"round": round_, "face_mode": mode, **locust_row(server, users, seconds, images, workdir, mode)}
                row = found[mode]
                print(f"  round {round_}: faces {mode:4s} {users} users: {row['images_per_s']:6.2f} img/s, p50 {row['p50_ms']:.0f} ms, "
                      f"p95 {row['p95_ms']:.0f} ms, {row['failures']} failures", flush=True)
            off = found["off"]["images_per_s"]
            found["auto"]["auto_over_off"] = round(found["auto"]["images_per_s"] / off, 4) if off else None
            rows += [found["auto"], found["off"]]
    ratios = [row["auto_over_off"] for row in rows if row.get("auto_over_off") is not None]
    if ratios:
        print(f"  faces auto / off per round: {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})", flush=True)
    return rows


def plot(costs: list[dict], e2e: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [row["photo"] for row in costs]
    left.barh(names, [row["decode_ms"] for row in costs], label="decode")
    left.barh(names, [row["face_stage_ms"] for row in costs], left=[row["decode_ms"] for row in costs], label="detect + crop")
    left.set(xlabel="ms per image (median)", title="Face stage cost in-process")
    axes = [left]
    if e2e:
        right.bar([f"{row['face_mode']} ({row['round']})" for row in e2e], [row["images_per_s"] for row in e2e], label="images/s")
        right.set(xlabel="face mode", ylabel="images/s", title=f"End to end, {e2e[0]['users']} users")
        axes.append(right)
    return save_figure(fig, axes, path)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "faces", 20, "photo")
    parser.add_argument("--users", type=int, default=8, help="Locust users (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=20, help="seconds per Locust run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of faces auto and off, alternating (default: %(default)s)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    options = handler_options()
    photos = photo_set()
    announce_cpu()
    print("Recall on the generated face set (deepfake_service/samples/faceset.py):", flush=True)
    found = recall(options, args.checkpoint, args.repeats)
    write_csv(found, args.output / "recall.csv")
    print(f"Recall as served ({options.face_detector}, each case a JPEG through the shipped decode, jpeg_draft_side "
          f"{options.jpeg_draft_side}):", flush=True)
    served = served_recall(options, args.checkpoint)
    write_csv(served, args.output / "served_recall.csv")
    print(f"Face stage in-process (shipped options, detector {options.face_detector}):", flush=True)
    costs = face_stage_costs(photos, options, args.repeats, args.checkpoint)
    write_csv(costs, args.output / "faces.csv")
    e2e = []
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory(prefix="faces-bench-") as workdir:
            e2e = end_to_end(args.checkpoint, photos, args.users, args.seconds, args.rounds, Path(workdir))
        write_csv(e2e, args.output / "e2e.csv")
    report = {"cpu": cpu_description(), "recall": found, "served_recall": served, "face_stage": costs, "end_to_end": e2e}
    (args.output / "faces.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}/recall.csv, served_recall.csv, faces.csv, e2e.csv, faces.json, {plot(costs, e2e, args.output / 'faces.png').name}")


if __name__ == "__main__":
    main()
