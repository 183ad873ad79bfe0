"""What a video costs: per 10-s H.264 clip at 480p, 720p and 1080p, seconds to demux and sample, to detect
faces, to classify the crops and in total (in-process, shipped handler settings), then videos/s with 4
concurrent clients against the shipped archive behind a real TorchServe, and the worker's RSS growth while it
answers the 1080p clip; then mixed traffic: 256-px JPEG (the astronaut) latencies from 4 image clients alone and beside one
client sending the 10-s 720p clip, with videos on their own workers (the shipped archive) and, to compare,
on one registration (the archive without its video section). Prints figures and writes
results/video/video.csv, e2e.csv, mixed.csv, video.json and video.png; it asserts nothing.

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
from skimage import data as photos

from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.project import MODEL_NAME, handler_options
from deepfake_service.samples import imagegen, videogen
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.faces import crop_region, cut
from handler.roles import video_twin
from handler.tracking import FrameSearch
from handler.video import sample_frames
from loadtest.harness import announce_cpu, bench_parser, built_server, model_config, save_figure, write_csv

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def _timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def stage_costs(classifier: DeepfakeClassifier, clips: dict[str, bytes], repeats: int) -> list[dict]:
    """Median seconds per clip for sampling, detection (as served: whole frames every
    ``video_full_search_every``-th, windows around known faces between; and, to compare, every frame whole),
    classification and the whole answer."""
    settings, detector = classifier.video, classifier.detector()
    rows = []
    for name, payload in clips.items():
        timings = {"sample_s": [], "detect_s": [], "detect_whole_s": [], "classify_s": [], "total_s": []}
        for _ in range(repeats):
            frames: list[tuple[float, Image.Image]] = []
            seconds, sampled = _timed(lambda: sample_frames(payload, settings, lambda t, image: frames.append((t, image))))
            timings["sample_s"].append(seconds)
            search = FrameSearch(detector, settings.full_search_every)
            seconds, found = _timed(lambda: [search.find(t, image) for t, image in frames])
            timings["detect_s"].append(seconds)
            timings["detect_whole_s"].append(_timed(lambda: [detector.detect(image) for _, image in frames])[0])
            frames = [image for _, image in frames]
            margin = classifier.faces.margin
            crops = [cut(image, crop_region(image.size, b, margin)) for image, boxes in zip(frames, found) for b in boxes]
            crops = crops or frames
            timings["classify_s"].append(_timed(lambda: classifier.classify(crops))[0])
            seconds, answer = _timed(lambda: classifier.predict_batch([Request(payload)])[0])
            timings["total_s"].append(seconds)
        row = {"clip": name, "size": "x".join(map(str, SIZES[name])), "bytes": len(payload),
               "frames": sampled.frames, "crops": len(crops), "people": len(answer["people"]),
               **{k: round(statistics.median(v), 3) for k, v in timings.items()}}
        row["overhead_share"] = round(1 - row["classify_s"] / row["total_s"], 3)
        # the same share from the stages alone (sampling and detection against their sum with classification):
        # a cross-check that does not lean on two separately timed runs of a noisy CPU
        row["stages_share"] = round((row["sample_s"] + row["detect_s"]) / (row["sample_s"] + row["detect_s"] + row["classify_s"]), 3)
        rows.append(row)
        print(f"  {name:5s} {row['bytes'] / 1e6:5.1f} MB  sample {row['sample_s']:.2f} s  detect {row['detect_s']:.2f} s "
              f"({search.whole} of {search.frames} frames whole; every frame whole: {row['detect_whole_s']:.2f} s)  "
              f"classify {row['classify_s']:.2f} s ({row['crops']} crops)  total {row['total_s']:.2f} s  "
              f"sampling+detection+overhead {100 * row['overhead_share']:.0f} % (from the stages: {100 * row['stages_share']:.0f} %)", flush=True)
    return rows


def worker_rss(server) -> int:
    described = requests.get(f"{server.management_url}/models/{video_twin(MODEL_NAME)}", headers=server.headers("management"), timeout=30)
    pids = [w["pid"] for w in described.json()[0]["workers"] if w.get("pid")]
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def served(checkpoint: Path, clips: dict[str, bytes], clients: int, per_client: int, workdir: Path) -> list[dict]:
    """Videos/s with ``clients`` concurrent clients (each sends ``per_client`` clips), and the worker's peak
    RSS growth while it answers the largest clip."""
    rows = []
    with built_server(workdir, checkpoint) as server:
        url = f"{server.inference_url}/predictions/{video_twin(MODEL_NAME)}"  # videos' own workers

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


def _image_load(url: str, headers: dict, image: bytes, clients: int, seconds: float) -> list[float]:
    """Latencies of ``clients`` image clients posting ``image`` back to back for ``seconds``."""
    deadline = time.monotonic() + seconds

    def client() -> list[float]:
        latencies = []
        while time.monotonic() < deadline and len(latencies) < 10_000:
            started = time.perf_counter()
            if requests.post(url, data=image, headers=headers, timeout=120).status_code == 200:
                latencies.append(time.perf_counter() - started)
        return latencies

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return sorted(x for found in pool.map(lambda _: client(), range(clients)) for x in found)


def mixed(checkpoint: Path, clip: bytes, workdir: Path, seconds: float = 30.0, clients: int = 4) -> list[dict]:
    """Image latency alone and with one client sending ``clip`` back to back, per design."""
    image = imagegen.photo_jpeg(Image.fromarray(photos.astronaut()).resize((256, 256)))  # one face
    rows = []
    for design, video_section in (("video workers", True), ("one registration", False)):
        config = model_config(workdir / f"{len(rows)}.yaml", **({} if video_section else {"video": None}))
        with built_server(workdir / f"mixed-{len(rows)}", checkpoint, config=config) as server:
            headers = server.headers()
            images = f"{server.inference_url}/predictions/{MODEL_NAME}"
            videos = f"{server.inference_url}/predictions/{video_twin(MODEL_NAME) if video_section else MODEL_NAME}"
            for url, payload in ((images, image), (videos, clip)):  # warm-up (and the runtime probes)
                requests.post(url, data=payload, headers=headers, timeout=300)
            alone = _image_load(images, headers, image, clients, seconds)
            stop, videos_done = threading.Event(), []

            def video_client() -> None:
                while not stop.is_set() and len(videos_done) < 1000:
                    started = time.perf_counter()
                    status = requests.post(videos, data=clip, headers=headers, timeout=300).status_code
                    videos_done.append((status, time.perf_counter() - started))

            sender = threading.Thread(target=video_client, daemon=True)
            sender.start()
            beside = _image_load(images, headers, image, clients, seconds)
            stop.set()
            sender.join(timeout=300)
            for phase, latencies in (("images alone", alone), ("with 1 video client", beside)):
                row = {"design": design, "phase": phase, "images": len(latencies), "images_per_s": round(len(latencies) / seconds, 2),
                       "p50_ms": round(1000 * statistics.median(latencies)), "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))])}
                rows.append(row)
            rows[-1]["videos"] = sum(status == 200 for status, _ in videos_done)
            rows[-1]["video_s"] = round(statistics.median([s for _, s in videos_done]), 2) if videos_done else None
            rows[-1]["p95_ratio"] = round(rows[-1]["p95_ms"] / rows[-2]["p95_ms"], 2)
            print(f"  {design}: images alone p50 {rows[-2]['p50_ms']} ms p95 {rows[-2]['p95_ms']} ms ({rows[-2]['images_per_s']}/s); "
                  f"with one video client p50 {rows[-1]['p50_ms']} ms p95 {rows[-1]['p95_ms']} ms ({rows[-1]['images_per_s']}/s), "
                  f"p95 x{rows[-1]['p95_ratio']}; {rows[-1]['videos']} clips answered, {rows[-1]['video_s']} s each", flush=True)
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
    parser.add_argument("--mixed-seconds", type=float, default=30.0, help="seconds per mixed-traffic phase (default: %(default)s)")
    parser.add_argument("--mixed-only", action="store_true", help="only the mixed-traffic figures")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    cpu = announce_cpu()
    if args.mixed_only:
        with tempfile.TemporaryDirectory(prefix="video-bench-") as workdir:
            traffic = mixed(args.checkpoint, videogen.walking_clip(SIZES["720p"]), Path(workdir), args.mixed_seconds)
        write_csv(traffic, args.output / "mixed.csv")
        (args.output / "mixed.json").write_text(json.dumps({"cpu": cpu, "mixed": traffic}, indent=2) + "\n")
        print(f"wrote {args.output}/mixed.csv, mixed.json")
        return
    clips = {name: videogen.walking_clip(size) for name, size in SIZES.items()}
    classifier = DeepfakeClassifier.from_checkpoint(args.checkpoint, with_detector_file(handler_options(), args.checkpoint))
    print(f"In-process, shipped settings ({classifier.runtime.name} {classifier.runtime.precision}, "
          f"{classifier.video.frames} frames per clip):", flush=True)
    costs = stage_costs(classifier, clips, args.repeats)
    write_csv(costs, args.output / "video.csv")
    e2e, traffic = [], []
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory(prefix="video-bench-") as workdir:
            e2e = served(args.checkpoint, clips, args.clients, args.per_client, Path(workdir))
            print("Mixed traffic (256-px JPEGs, 4 image clients; one client sending the 720p clip):", flush=True)
            traffic = mixed(args.checkpoint, clips["720p"], Path(workdir), args.mixed_seconds)
        write_csv(e2e, args.output / "e2e.csv")
        write_csv(traffic, args.output / "mixed.csv")
    report = {"cpu": cpu, "runtime": [classifier.runtime.name, classifier.runtime.precision], "stages": costs, "end_to_end": e2e,
              "mixed": traffic}
    (args.output / "video.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}/video.csv, video.json, {plot(costs, args.output / 'video.png').name}")


if __name__ == "__main__":
    main()
