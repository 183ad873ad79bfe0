"""Benchmark: the in-process ceiling of each runtime x precision, and TorchServe end to end under Locust.

One run on one machine measures, on a deterministic image set (256x256 JPEGs like the training face
crops, plus large photos):
  - in-process images/s of the core's forward pass at several batch sizes, per runtime x precision;
  - decode + preprocessing ms per small and per large JPEG;
  - max |probability difference| and argmax agreement of every mode against torch fp32;
  - end-to-end throughput and p50/p95/p99 latency under headless Locust on loopback, at several user
    counts, for the tuned configuration (config/model-config.yaml, or --e2e-modes), the same with faces off,
    a naive one (batchSize 1, torch fp32, TorchServe's default worker count), the seed's design and a
    LitServe peer (loadtest/litserve_app.py);
  - the ratios: tuned / naive, / seed and / LitServe throughput and p95 at 8 users, end-to-end / in-process ceiling
    (the ceiling of each configuration's mode measured right before and after each of its runs at the user
    count the ratios compare: 8, else the largest; --ceiling-rounds runs; the ratio is their median).
It prints tables and writes CSV files and PNG plots to --output. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import requests
import torch
import yaml

from deepfake_service.packaging.archive import Int8Inputs
from deepfake_service.packaging.openvino import convert_to_openvino
from deepfake_service.packaging.quantize import prepare_int8
from deepfake_service.project import DEMO_CHECKPOINT, KEY_FILE, MODEL_NAME, ROOT, read_model_config
from deepfake_service.serving.process import terminate_group
from deepfake_service.serving.properties import free_port
from deepfake_service.serving.rollout import RolloutError, predict
from deepfake_service.serving.server import Server
from handler.classifier import DeepfakeClassifier
from handler.hardware import cpu_description
from handler.images import decode_image
from handler.options import HandlerOptions
from loadtest.harness import built_server, locust_row, save_figure, write_csv, write_image_set

MODES = [("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]
DRAFT_SIDE = 448
RATIO_USERS = 8  # the user count the ratios compare (else the largest one run)
NAME = MODEL_NAME


def linked_copy(source: Path, folder: Path) -> Path:
    """A folder of links to ``source``'s files."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and not (folder / item.name).exists():
            (folder / item.name).symlink_to(item.resolve())
    return folder


def linked_copy_of(paths: list[Path], folder: Path) -> Path:
    """A folder of links to ``paths``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def mode_checkpoints(checkpoint: Path, calibration: Path, workdir: Path) -> dict[tuple[str, str], Path]:
    """A checkpoint folder per mode: the OpenVINO IR beside the weights, and for int8 an NNCF-quantized IR
    and an explicit *unvalidated* verdict (random demo weights cannot prove int8; answers say so)."""
    base = linked_copy(checkpoint, workdir / "checkpoint")
    convert_to_openvino(checkpoint, base)
    folders = {mode: base for mode in MODES if mode[1] != "int8"}
    for runtime in ("torch", "openvino"):
        folder = linked_copy(base, workdir / f"int8-{runtime}")
        prepare_int8(folder, runtime, calibration if runtime == "openvino" else None, None, unvalidated=True)
        folders[(runtime, "int8")] = folder
    return folders


def timed_forward(classifier: DeepfakeClassifier, pixels: torch.Tensor, batch: int, min_seconds: float, max_calls: int = 50) -> float:
    """Images/s of ``runtime.predict`` at ``batch`` (one warm-up call, then at least 2 calls and ``min_seconds``)."""
    repeats = -(-batch // len(pixels))
    chunk = pixels.repeat(repeats, 1, 1, 1)[:batch]
    classifier.runtime.predict(chunk)
    calls, started = 0, time.perf_counter()
    while calls < max_calls and (calls < 2 or time.perf_counter() - started < min_seconds):
        classifier.runtime.predict(chunk)
        calls += 1
    return batch * calls / (time.perf_counter() - started)


def preprocessing_ms(classifier: DeepfakeClassifier, paths: list[Path], repeats: int) -> float:
    """Mean ms to decode one JPEG and preprocess it (the worker's per-image CPU work before the forward pass)."""
    payloads = [p.read_bytes() for p in paths]
    started = time.perf_counter()
    for _ in range(repeats):
        for payload in payloads:
            classifier.preprocess([decode_image(payload, classifier.limits)])
    return 1000 * (time.perf_counter() - started) / (repeats * len(payloads))


def draft_effect(classifier: DeepfakeClassifier, larges: list[Path]) -> dict:
    """Cost and probability change of decoding large JPEGs with ``jpeg_draft_side`` = DRAFT_SIDE."""
    if not larges:
        return {}
    drafted = DeepfakeClassifier(
        classifier.processor, classifier.labels, classifier.runtime, classifier.identity,
        replace(classifier.limits, jpeg_draft_side=DRAFT_SIDE), classifier.faces,
    )
    full = np.array([[p for p in a["probabilities"].values()] for a in classifier.predict_batch([p.read_bytes() for p in larges])])
    fast = np.array([[p for p in a["probabilities"].values()] for a in drafted.predict_batch([p.read_bytes() for p in larges])])
    return {
        f"large_jpeg_ms_draft_{DRAFT_SIDE}": round(preprocessing_ms(drafted, larges, 2), 1),
        "draft_max_abs_diff": float(np.abs(full - fast).max()),
        "draft_argmax_agreement": float((full.argmax(1) == fast.argmax(1)).mean()),
    }


def in_process(folders: dict, smalls: list[Path], larges: list[Path], batches: list[int], min_seconds: float) -> dict:
    """Throughput per mode and batch, deviations against torch fp32, preprocessing cost."""
    payloads = [p.read_bytes() for p in smalls]
    throughput, deviations, reference = [], [], None
    preprocess = {}
    for runtime, precision in MODES:
        classifier = DeepfakeClassifier.from_checkpoint(folders[(runtime, precision)], HandlerOptions(runtime=runtime, precision=precision))
        pixels = classifier.preprocess([decode_image(p, classifier.limits) for p in payloads])
        for batch in batches:
            rate = timed_forward(classifier, pixels, batch, min_seconds)
            throughput.append({"runtime": runtime, "precision": precision, "computed": classifier.runtime.precision,
                               "batch": batch, "images_per_s": round(rate, 2)})
            print(f"  in-process {runtime:8s} {precision:4s} (computed {classifier.runtime.precision:16s}) batch {batch:2d}: "
                  f"{rate:6.2f} img/s", flush=True)
        probabilities = torch.softmax(classifier.runtime.predict(pixels), dim=-1).numpy()
        if reference is None:
            reference = probabilities
            preprocess = {
                "small_jpeg_ms": round(preprocessing_ms(classifier, smalls, 3), 2),
                "large_jpeg_ms": round(preprocessing_ms(classifier, larges, 2), 1) if larges else None,
                **draft_effect(classifier, larges),
            }
        deviations.append(
            {
                "runtime": runtime,
                "precision": precision,
                "max_abs_diff": float(np.abs(probabilities - reference).max()),
                "argmax_agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
            }
        )
    return {"throughput": throughput, "deviations": deviations, "preprocess": preprocess}


def naive_settings(config: dict) -> dict:
    """batchSize 1, torch fp32, TorchServe's default worker count: the seed's one-request-one-forward design."""
    naive = {k: v for k, v in config.items() if k not in ("minWorkers", "maxWorkers")}
    naive.update(batchSize=1, maxBatchDelay=0, handler={**config["handler"], "runtime": "torch", "precision": "fp32"})
    return naive


def end_to_end(
    checkpoint: Path, label: str, settings: dict, users: list[int], seconds: int, images: Path, workdir: Path, int8: Int8Inputs,
    ceiling: Ceiling | None = None, rounds: int = 1, min_seconds: float = 2.0, bracketed_users: int | None = None,
) -> list[dict]:
    """Serve ``checkpoint`` with ``settings`` as model-config.yaml and load it at each user count. With a
    ``ceiling``, ``bracketed_users`` (default: the largest count) runs ``rounds`` times, each between two
    measurements of the ceiling (the server idle meanwhile), and its rows carry them and ``of_ceiling``:
    images/s over their mean."""
    folder = workdir / label
    folder.mkdir(parents=True)
    model_config = folder / "model-config.yaml"
    model_config.write_text(yaml.safe_dump(settings))
    rows = []
    with built_server(folder, checkpoint, NAME, config=model_config, int8=int8) as server:
        served_by = serving_runtime(server, next(iter(sorted(images.iterdir()))).read_bytes())
        print(f"  end-to-end {label}: the worker computes with {served_by}", flush=True)
        for count in users:
            bracketed = ceiling is not None and count == (bracketed_users or max(users))
            for _ in range(max(1, rounds) if bracketed else 1):
                before = ceiling.measure(min_seconds) if bracketed else None
                row = {"config": label, "served_by": served_by, **locust_row(server, count, seconds, images, folder)}
                if bracketed:
                    after = ceiling.measure(min_seconds)
                    row.update(ceiling_before=before, ceiling_after=after)
                    row["of_ceiling"] = round(2 * row["images_per_s"] / (before + after), 2) if before and after else None
                rows.append(row)
                print(
                    f"  end-to-end {label:28s} {count:2d} users: {row['images_per_s']:6.2f} img/s, "
                    f"p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
                    f"{row['failures']} failures, locust CPU {100 * row['locust_cpu_share']:.0f}%"
                    + (f"; in-process ceiling {before} before, {after} after: {row['of_ceiling']} of it" if bracketed else ""),
                    flush=True,
                )
    return rows


def serving_runtime(server: Server, image: bytes) -> str:
    """What the worker computes with (``auto`` chose it when the worker loaded), from one answer."""
    try:
        answer = predict(server, NAME, None, image)
    except (RolloutError, requests.RequestException) as error:
        return f"unknown ({error})"
    return f"{answer.get('runtime')} {answer.get('precision')}"


def plot(report: dict, output: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for runtime, precision in MODES:
        rows = [r for r in report["throughput"] if (r["runtime"], r["precision"]) == (runtime, precision)]
        ax.plot([r["batch"] for r in rows], [r["images_per_s"] for r in rows], marker="o", label=f"{runtime} {precision}")
    ax.set(xlabel="batch size", ylabel="images/s", title="In-process ceiling (forward pass)")
    written.append(save_figure(fig, [ax], output / "inprocess.png"))
    if report["end_to_end"]:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for label in dict.fromkeys(r["config"] for r in report["end_to_end"]):
            rows = [r for r in report["end_to_end"] if r["config"] == label]
            left.plot([r["users"] for r in rows], [r["images_per_s"] for r in rows], marker="o", label=label)
            right.plot([r["users"] for r in rows], [r["p95_ms"] for r in rows], marker="o", label=label)
        left.set(xlabel="concurrent users", ylabel="images/s", title="TorchServe throughput")
        right.set(xlabel="concurrent users", ylabel="p95 latency (ms)", title="TorchServe p95 latency")
        written.append(save_figure(fig, [left, right], output / "endtoend.png"))
    return written


def counts_toward(mode: tuple[str, str], runtime: str, precision: str, computed: str | None = None) -> bool:
    """Whether a measured ``runtime`` x ``precision`` (computing ``computed``; None: not known yet) counts
    toward ``mode``'s ceiling: a fixed mode itself; for ``auto`` what auto may choose (modes that compute the
    precision they name, int8 excluded: the benchmark's int8 is never gated)."""
    if "auto" not in mode:
        return (runtime, precision) == mode
    return (precision != "int8" and computed in (None, precision) and mode[0] in ("auto", runtime)
            and mode[1] in ("auto", precision))


def ceiling(report: dict, mode: tuple[str, str]) -> float:
    """The best in-process images/s of ``mode`` in the sweep (``counts_toward``)."""
    return max(r["images_per_s"] for r in report["throughput"] if counts_toward(mode, r["runtime"], r["precision"], r["computed"]))


class Ceiling:
    """The in-process ceiling of ``mode`` (images/s of the forward pass at ``batch``, the best of the modes
    that count toward it: ``counts_toward``), its classifiers loaded once, so it can be measured right before
    and right after each end-to-end run: this CPU's speed drifts (machine B: up to 2x within minutes), so a
    ratio needs a ceiling from the same minutes."""

    def __init__(self, folders: dict, smalls: list[Path], mode: tuple[str, str], batch: int = 8) -> None:
        payloads = [p.read_bytes() for p in smalls[:8]]
        self.batch, self.entries = batch, []
        for runtime, precision in MODES:
            if not counts_toward(mode, runtime, precision):
                continue
            classifier = DeepfakeClassifier.from_checkpoint(folders[(runtime, precision)], HandlerOptions(runtime=runtime, precision=precision))
            if counts_toward(mode, runtime, precision, classifier.runtime.precision):
                self.entries.append((classifier, classifier.preprocess([decode_image(p, classifier.limits) for p in payloads])))

    def measure(self, min_seconds: float) -> float | None:
        """The best images/s now; None when no mode qualifies."""
        rates = [timed_forward(classifier, pixels, self.batch, min_seconds) for classifier, pixels in self.entries]
        return round(max(rates), 2) if rates else None


def peer_baseline(label: str, command: list[str], env: dict[str, str], users: list[int], seconds: int, images: Path,
                  workdir: Path, upload_field: str | None = None) -> list[dict]:
    """Another server design (``command``, given its port as ``{port}``) on a free loopback port, answering
    ``/ping`` and ``POST /predictions/<name>``, loaded like the TorchServe configurations, then stopped."""
    folder = workdir / label.split()[0]
    (folder / "run").mkdir(parents=True)
    (folder / "run" / KEY_FILE).write_text(json.dumps({"inference": {"key": "unused"}}))  # the Locust file reads one
    port = free_port()
    rows = []
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen([part.format(port=port) for part in command], cwd=ROOT,
                                   env=dict(os.environ, **{k: v.format(port=port) for k, v in env.items()}),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server = Server(folder / "run", {"inference_address": f"http://127.0.0.1:{port}"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{server.inference_url}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        for count in users:
            row = {"config": label, **locust_row(server, count, seconds, images, folder, upload_field=upload_field)}
            rows.append(row)
            print(f"  end-to-end {label:28s} {count:2d} users: {row['images_per_s']:6.2f} img/s, p50 {row['p50_ms']:.0f} ms, "
                  f"p95 {row['p95_ms']:.0f} ms, {row['failures']} failures", flush=True)
    finally:
        terminate_group(process.pid, 30)
    return rows


def seed_baseline(checkpoint: Path, users: list[int], seconds: int, images: Path, workdir: Path) -> list[dict]:
    """The seed's design (loadtest/seed_app.py: Flask + gunicorn, one sync worker, torch fp32, one image per
    request, raw bodies)."""
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", "127.0.0.1:{port}", "--timeout", "300",
               "loadtest.seed_app:app"]
    return peer_baseline(SEED, command, {"SEED_CHECKPOINT": str(checkpoint.resolve())}, users, seconds, images, workdir)


def litserve_baseline(checkpoint: Path, users: list[int], seconds: int, images: Path, workdir: Path) -> list[dict]:
    """What a user might pick instead (loadtest/litserve_app.py: LitServe, batches of 8 within 10 ms, torch
    bf16 autocast, whole images, multipart uploads)."""
    env = {"LITSERVE_CHECKPOINT": str(checkpoint.resolve()), "LITSERVE_PORT": "{port}"}
    command = [sys.executable, "-m", "loadtest.litserve_app"]
    return peer_baseline(LITSERVE, command, env, users, seconds, images, workdir, upload_field="data")


def ratios(report: dict, configs: list[dict], users: int = RATIO_USERS) -> list[dict]:
    """Each configuration against the seed's design, LitServe and the naive TorchServe at ``users`` users
    (the mean of its rounds there), and end to end against the in-process ceiling of its mode: the median
    of the rounds' ``of_ceiling`` (else the best end-to-end figure over the sweep's ceiling)."""
    runs: dict[str, list[dict]] = {}
    for row in report["end_to_end"]:
        if row["users"] == users:
            runs.setdefault(row["config"], []).append(row)
    at = {label: {key: float(np.mean([r[key] for r in rows])) for key in ("images_per_s", "p95_ms")} for label, rows in runs.items()}
    naive, seed, litserve = at.get(NAIVE), at.get(SEED), at.get(LITSERVE)
    rows = []
    for config in configs:
        label, mode = config["label"], config["mode"]
        if label not in at:
            continue
        rounds = [r["of_ceiling"] for r in runs[label] if r.get("of_ceiling")]
        best_e2e = max(r["images_per_s"] for r in report["end_to_end"] if r["config"] == label)
        rows.append(
            {
                "config": label,
                f"throughput_vs_seed_{users}u": round(at[label]["images_per_s"] / seed["images_per_s"], 2) if seed else None,
                f"p95_vs_seed_{users}u": round(at[label]["p95_ms"] / seed["p95_ms"], 3) if seed else None,
                f"throughput_vs_litserve_{users}u": round(at[label]["images_per_s"] / litserve["images_per_s"], 2) if litserve else None,
                f"throughput_vs_naive_{users}u": round(at[label]["images_per_s"] / naive["images_per_s"], 2) if naive else None,
                f"p95_vs_naive_{users}u": round(at[label]["p95_ms"] / naive["p95_ms"], 3) if naive else None,
                "e2e_vs_inprocess_ceiling": float(np.median(rounds)) if rounds else round(best_e2e / ceiling(report, mode), 2),
                "of_ceiling_rounds": rounds,
            }
        )
    return rows


NAIVE = "naive torch fp32"
SEED = "seed design (Flask+gunicorn)"
LITSERVE = "litserve (batch 8, bf16)"


def e2e_configs(
    shipped: dict, tuned_modes: list[tuple[str, str]], compare_workers: bool, naive: bool = True, delays: tuple[int, ...] = ()
) -> list[dict]:
    """The tuned modes on the shipped settings, the first one again at each of ``delays`` (maxBatchDelay,
    ms), a 2 workers x 1 thread variant of the first, and the naive one."""
    configs = []
    for runtime, precision in tuned_modes:
        handler = {**shipped["handler"], "runtime": runtime, "precision": precision}
        configs.append({"label": f"tuned {runtime} {precision}", "mode": (runtime, precision), "settings": {**shipped, "handler": handler}})
    first = configs[0]
    for delay in delays:
        settings = {**first["settings"], "maxBatchDelay": delay}
        configs.append({"label": f"{first['label']} delay {delay} ms", "mode": first["mode"], "settings": settings})
    # Faces off: the same configuration classifying whole images, as the peers do.
    settings = {**first["settings"], "handler": {**first["settings"]["handler"], "face_mode": "off"}}
    configs.append({"label": first["label"] + " faces off", "mode": first["mode"], "settings": settings})
    if compare_workers:
        settings = {**first["settings"], "minWorkers": 2, "maxWorkers": 2, "handler": {**first["settings"]["handler"], "threads": 1}}
        configs.append({"label": first["label"] + " 2x1", "mode": first["mode"], "settings": settings})
    if naive:
        configs.append({"label": NAIVE, "mode": ("torch", "fp32"), "settings": naive_settings(shipped)})
    return configs


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    print(f"\n{title}")
    columns = list(dict.fromkeys(key for row in rows for key in row))  # every key of any row, as write_csv
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="HF checkpoint (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench", help="report folder (default: results/bench)")
    parser.add_argument("--batches", default="1,4,8,16", help="in-process batch sizes (default: %(default)s)")
    parser.add_argument("--users", default="1,4,8,16", help="Locust user counts (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=20, help="seconds per Locust run (default: %(default)s)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="minimum seconds per in-process point (default: %(default)s)")
    parser.add_argument("--small", type=int, default=24, help="256x256 JPEGs in the image set (default: %(default)s)")
    parser.add_argument("--large", type=int, default=2, help="4000x3000 JPEGs in the image set (default: %(default)s)")
    parser.add_argument("--e2e-modes", default="", help="tuned modes to serve, e.g. openvino:bf16,torch:bf16 "
                        "(default: the one in config/model-config.yaml, then openvino:int8)")
    parser.add_argument("--no-workers-compare", action="store_true", help="skip the 2 workers x 1 thread variant")
    parser.add_argument("--skip-e2e", action="store_true", help="in-process figures only")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive configuration")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed's design (loadtest/seed_app.py) as the baseline")
    parser.add_argument("--no-litserve", action="store_true", help="skip the LitServe peer (loadtest/litserve_app.py)")
    parser.add_argument("--ceiling-rounds", type=int, default=3, help="runs at 8 users (else the largest count) per configuration, "
                        "each between two in-process ceiling measurements; the ratio is their median (default: %(default)s)")
    parser.add_argument("--batch-delays", default="", help="also serve the first tuned mode at each maxBatchDelay (ms), "
                        "e.g. 5,10,25,50 (default: none)")
    args = parser.parse_args(argv)

    output = args.output
    output.mkdir(parents=True, exist_ok=True)
    shipped = read_model_config()
    default_modes = [(shipped["handler"]["runtime"], shipped["handler"]["precision"]), ("openvino", "int8")]
    tuned_modes = [tuple(m.split(":")) for m in args.e2e_modes.split(",") if m] or list(dict.fromkeys(default_modes))
    delays = tuple(int(d) for d in args.batch_delays.split(",") if d)
    configs = [] if args.skip_e2e else e2e_configs(shipped, tuned_modes, not args.no_workers_compare, not args.no_naive, delays)
    cpu = cpu_description()
    print(f"benchmark of {args.checkpoint} on {cpu['model']}, {cpu['cores']} cores, ISA {' '.join(cpu['isa']) or 'baseline'}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        scratch = Path(scratch)
        images = output / "images"
        smalls, larges = write_image_set(images, args.small, args.large)
        calibration = linked_copy_of(smalls, scratch / "calibration")
        folders = mode_checkpoints(args.checkpoint, calibration, scratch)
        report = in_process(folders, smalls, larges, [int(b) for b in args.batches.split(",")], args.min_seconds)
        report["cpu"] = cpu
        report["end_to_end"] = []
        # Timing only: the demo's random weights cannot pass the int8 gate, and answers say "int8-unvalidated".
        int8 = Int8Inputs(calibration=calibration, unvalidated=True)
        users = [int(u) for u in args.users.split(",")]
        compared = RATIO_USERS if RATIO_USERS in users else max(users)  # the user count the ratios compare
        for config in configs:
            bracket = Ceiling(folders, smalls, config["mode"])
            report["end_to_end"] += end_to_end(args.checkpoint, config["label"], config["settings"], users, args.seconds, images, scratch,
                                               int8, bracket, args.ceiling_rounds, args.min_seconds, compared)
            del bracket
        if configs and not args.no_seed:
            report["end_to_end"] += seed_baseline(args.checkpoint, [int(u) for u in args.users.split(",")], args.seconds, images, scratch)
        if configs and not args.no_litserve:
            report["end_to_end"] += litserve_baseline(args.checkpoint, [int(u) for u in args.users.split(",")], args.seconds, images, scratch)
        report["ratios"] = ratios(report, configs, compared) if configs else []
        forward_ms = 1000 / ceiling(report, tuned_modes[0])
        report["preprocess"]["share_of_worker_cpu_small"] = round(
            report["preprocess"]["small_jpeg_ms"] / (report["preprocess"]["small_jpeg_ms"] + forward_ms), 3
        )
    print_table("In-process ceiling (images/s)", report["throughput"])
    print_table("Deviation from torch fp32 on the image set", report["deviations"])
    print_table("Decode + preprocessing", [report["preprocess"]])
    print_table("End to end (TorchServe + Locust on loopback)", report["end_to_end"])
    print_table("Ratios", report["ratios"])
    for key in ("throughput", "deviations", "end_to_end", "ratios"):
        if report[key]:
            write_csv(report[key], output / f"{key}.csv")
    (output / "report.json").write_text(json.dumps(report, indent=2))
    written = plot(report, output)
    print(f"\nwrote {output}/*.csv, report.json, " + ", ".join(p.name for p in written))


if __name__ == "__main__":
    main()
