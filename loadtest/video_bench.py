"""What a video costs: per 10-s H.264 clip at 480p, 720p and 1080p, seconds to demux and sample, to detect
faces, to classify the crops and in total (in-process, shipped handler settings), then videos/s with 4
concurrent clients against the shipped archive behind a real TorchServe, and the worker's RSS growth while it
answers the 1080p clip. Prints figures and writes results/video/video.csv, e2e.csv, video.json and
video.png; it asserts nothing.

  python -m loadtest.video_bench --checkpoint checkpoints/demo      (make bench-video)
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from PIL import Image

from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.project import MODEL_NAME, handler_options
from deepfake_service.samples import videogen
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.faces import crop_region, cut
from handler.video import sample_frames
from loadtest.harness import announce_cpu, bench_parser, built_server, save_figure, write_csv

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def _timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def stage_costs(classifier: DeepfakeClassifier, clips: dict[str, bytes], repeats: int) -> list[dict]:
    """Median seconds per clip for sampling, detection, classification and the whole answer."""
    settings, detector = classifier.video, classifier.detector()
    rows = []
    for name, payload in clips.items():
        timings = {"sample_s": [], "detect_s": [], "classify_s": [], "total_s": []}
        for _ in range(repeats):
            frames: list[Image.Image] = []
            seconds, sampled = _timed(lambda: sample_frames(payload, settings, lambda t, image: frames.append(image)))
            timings["sample_s"].append(seconds)
            seconds, found = _timed(lambda: [detector.detect(image) for image in frames])
            timings["detect_s"].append(seconds)
            margin = classifier.faces.margin
            crops = [cut(image, crop_region(image.size, b, margin)) for image, boxes in zip(frames, found) for b in boxes]
            crops = crops or frames
            timings["classify_s"].append(_timed(lambda: classifier.classify(crops))[0])
            seconds, answer = _timed(lambda: classifier.predict_batch([Request(payload)])[0])
            timings["total_s"].append(seconds)
        row = {"clip": name, "size": "x".join(map(str, SIZES[name])), "bytes": len(payload),
               "frames": sampled.frames, "crops": len(crops), "people": len(answer["people"]), **{k: round(statistics.median(v), 3) for k, v in timings.items()}}
        row["overhead_share"] = round(1 - row["classify_s"] / row["total_s"], 3)
        rows.append(row)
        print(f"  {name:5s} {row['bytes'] / 1e6:5.1f} MB  sample {row['sample_s']:.2f} s  detect {row['detect_s']:.2f} s  "
              f"classify {row['classify_s']:.2f} s ({row['crops']} crops)  total {row['total_s']:.2f} s  "
              f"sampling+detection+overhead {100 * row['overhead_share']:.0f} %", flush=True)
    return rows


def worker_rss(server) -> int:
    described = requests.get(f"{server.management_url}/models/{MODEL_NAME}", headers=server.headers("management"), timeout=30)
    pids = [w["pid"] for w in described.json()[0]["workers"] if w.get("pid")]
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def served(checkpoint: Path, clips: dict[str, bytes], clients: int, per_client: int, workdir: Path) -> list[dict]:
    """Videos/s with ``clients`` concurrent clients (each sends ``per_client`` clips), and the worker's peak
    RSS growth while it answers the largest clip."""
    rows = []
    with built_server(workdir, checkpoint) as server:
        url = f"{server.inference_url}/predictions/{MODEL_NAME}"

        def post(payload: bytes) -> tuple[int, float]:
            started = time.perf_counter()
            answer = requests.post(url, data=payload, headers=server.headers(), timeout=300)
            return answer.status_code, time.perf_counter() - started

        post(clips["480p"])  # warm-up (and the runtime probe), not reported
        for name, payload in clips.items():
            with ThreadPoolExecutor(max_workers=clients) as pool:
                started = time.perf_counter()
                results = list(pool.map(post, [payload] * (clients * per_client)))
                wall = time.perf_counter() - started
            latencies = sorted(seconds for _, seconds in results)
            rows.append({"clip": name, "clients": clients, "videos": len(results),
                         "ok": sum(status == 200 for status, _ in results), "videos_per_s": round(len(results) / wall, 3),
                         "p50_s": round(statistics.median(latencies), 2), "max_s": round(latencies[-1], 2)})
            print(f"  end-to-end {name:5s} {clients} clients: {rows[-1]['videos_per_s']:.2f} videos/s, p50 {rows[-1]['p50_s']:.1f} s, "
                  f"{rows[-1]['ok']}/{len(results)} answered 200", flush=True)
        before, peak, stop = worker_rss(server), [0], threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], worker_rss(server))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        status, _ = post(clips["1080p"])
        stop.set()
        watcher.join(timeout=5)
        rows.append({"clip": "1080p RSS", "clients": 1, "videos": 1, "ok": int(status == 200),
                     "rss_before_mb": round(before / 2**20), "rss_peak_mb": round(peak[0] / 2**20),
                     "rss_growth_mb": round((peak[0] - before) / 2**20)})
        print(f"  worker RSS while answering the 1080p clip: {before / 2**20:.0f} -> peak {peak[0] / 2**20:.0f} MB", flush=True)
    return rows


def plot(costs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [row["clip"] for row in costs]
    left = [0.0] * len(costs)
    for key, label in (("sample_s", "demux + sample"), ("detect_s", "detect"), ("classify_s", "classify")):
        values = [row[key] for row in costs]
        ax.barh(names, values, left=left, label=label)
        left = [a + b for a, b in zip(left, values)]
    ax.set(xlabel="seconds per 10-s clip (median)", title="Video stages in-process")
    return save_figure(fig, [ax], path)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "video", 3, "clip")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients end to end (default: %(default)s)")
    parser.add_argument("--per-client", type=int, default=2, help="clips each client sends (default: %(default)s)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    cpu = announce_cpu()
    clips = {name: videogen.walking_clip(size) for name, size in SIZES.items()}
    classifier = DeepfakeClassifier.from_checkpoint(args.checkpoint, with_detector_file(handler_options(), args.checkpoint))
    print(f"In-process, shipped settings ({classifier.runtime.name} {classifier.runtime.precision}, "
          f"{classifier.video.frames} frames per clip):", flush=True)
    costs = stage_costs(classifier, clips, args.repeats)
    write_csv(costs, args.output / "video.csv")
    e2e = []
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory(prefix="video-bench-") as workdir:
            e2e = served(args.checkpoint, clips, args.clients, args.per_client, Path(workdir))
        write_csv(e2e, args.output / "e2e.csv")
    report = {"cpu": cpu, "runtime": [classifier.runtime.name, classifier.runtime.precision], "stages": costs, "end_to_end": e2e}
    (args.output / "video.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}/video.csv, video.json, {plot(costs, args.output / 'video.png').name}")


if __name__ == "__main__":
    main()
