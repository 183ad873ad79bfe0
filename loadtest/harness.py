"""One way to bring up a server for measuring or testing, and one way to run Locust against it.

``local_server`` serves a model store on free loopback ports (from the shipped config.properties) and
always stops it; ``built_server`` first builds the archive from a checkpoint and a model config. Their
records go to a throw-away store of the run (``measuring_records``), never to the one ``make serve`` uses.
``run_locust`` runs the Locust file headless for a bounded time and returns its summary row.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml
from PIL import Image

from deepfake_service.packaging.archive import Int8Inputs, build_mar
from deepfake_service.project import (
    CONFIG_PROPERTIES,
    DEMO_CHECKPOINT,
    KEY_FILE,
    LOCUSTFILE,
    MODEL_CONFIG,
    MODEL_NAME,
    MODEL_VERSION,
    ROOT,
    read_model_config,
)
from deepfake_service.serving.process import running_pid, serving
from deepfake_service.serving.properties import loopback_config
from deepfake_service.serving.server import Server
from handler.hardware import cpu_description

RECORDS_ENV = "LOADTEST_RECORDS_URL"  # opt-in: the record store measuring servers write to ("off": none)
THROWAWAY_RECORDS = "records.sqlite3"


def model_config(target: Path, base: Path = MODEL_CONFIG, **overrides) -> Path:
    """``base`` model-config.yaml with top-level settings overridden (``handler`` merges key by key)."""
    config = read_model_config(base)
    config["handler"].update(overrides.pop("handler", {}))
    config.update(overrides)
    target.write_text(yaml.safe_dump(config))
    return target


def measuring_records(run_dir: Path) -> str:
    """The record store of a server started to measure or test from ``run_dir``: ``LOADTEST_RECORDS_URL``
    when set (e.g. the served store, for a user who wants a run's records on /review), else a fresh SQLite
    file in ``run_dir`` (an earlier run's removed), so that generated traffic never reaches the store
    ``make serve`` uses and the run still pays what keeping records costs."""
    chosen = os.environ.get(RECORDS_ENV)
    if chosen:
        return chosen
    if not running_pid(run_dir):  # a server still running from there keeps its store (its start refuses anyway)
        for leftover in run_dir.glob(THROWAWAY_RECORDS + "*"):  # with SQLite's -wal and -shm files
            leftover.unlink()
    return f"sqlite:///{run_dir.resolve() / THROWAWAY_RECORDS}"


@contextlib.contextmanager
def local_server(
    workdir: Path, store: Path, models: list[str], properties: dict | None = None, timeout: float = 300.0,
    records_url: str | None = None,
) -> Iterator[Server]:
    """Serve ``models`` (``NAME=FILE.mar``; none: the config's snapshot) from ``store`` with the shipped
    config.properties, ``properties`` over it, every listener on a free loopback port; always stops.
    Records go to ``records_url`` ("off": none; None: ``measuring_records``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = loopback_config(CONFIG_PROPERTIES, workdir / "config.properties", **(properties or {}))
    run_dir = workdir / "run"
    with serving(config, store, models, run_dir, timeout=timeout, records_url=records_url or measuring_records(run_dir)) as server:
        yield server


@contextlib.contextmanager
def built_server(
    workdir: Path,
    checkpoint: Path,
    name: str = MODEL_NAME,
    version: str = MODEL_VERSION,
    config: Path = MODEL_CONFIG,
    properties: dict | None = None,
    int8: Int8Inputs = Int8Inputs(),
    timeout: float = 300.0,
    records_url: str | None = None,
) -> Iterator[Server]:
    """Build ``name``.mar from ``checkpoint`` with the model config ``config``, then ``local_server`` it."""
    store = workdir / "model_store"
    build_mar(checkpoint, name, version, model_config=config, export_dir=store, int8=int8)
    with local_server(workdir, store, [f"{name}={name}.mar"], properties, timeout, records_url) as server:
        yield server


def locust_command(server: Server, users: int, seconds: int, csv_prefix: Path, *extra: str) -> list[str]:
    """The headless Locust command line against ``server`` (run it with ``locust_env``)."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "30",
        "--host", server.inference_url, "--csv", str(csv_prefix), "--loglevel", "WARNING", *extra,
    ]


def locust_env(server: Server, images: Path | None, model: str, face_mode: str | None = None,
               upload_field: str | None = None) -> dict[str, str]:
    """What the Locust file reads: the key file, the images, the model, the face mode and the multipart
    field to upload in (None: raw bodies)."""
    env = dict(os.environ, LOADTEST_KEY_FILE=str(server.run_dir / KEY_FILE), LOADTEST_MODEL=model)
    if upload_field:
        env["LOADTEST_UPLOAD_FIELD"] = upload_field
    if images is not None:
        env["LOADTEST_IMAGES"] = str(images)
    if face_mode:
        env["LOADTEST_FACE_MODE"] = face_mode
    return env


def run_locust(
    server: Server,
    users: int,
    seconds: int,
    csv_prefix: Path,
    *,
    images: Path | None = None,
    model: str = MODEL_NAME,
    face_mode: str | None = None,
    upload_field: str | None = None,
    tags: tuple[str, ...] = (),
    exclude_tags: tuple[str, ...] = ("bad",),
) -> dict[str, dict]:
    """One headless Locust run, bounded to ``seconds`` + 120 s; returns the stats rows by request name,
    plus ``_client`` (wall seconds and the share of all cores Locust itself used).

    Failed requests are counted in the rows; raises ``RuntimeError`` when Locust wrote no stats."""
    extra = [*(["--tags", *tags] if tags else []), *(["--exclude-tags", *exclude_tags] if exclude_tags and not tags else [])]
    Path(f"{csv_prefix}_stats.csv").unlink(missing_ok=True)  # an earlier run's stats must not stand for this one
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        locust_command(server, users, seconds, csv_prefix, *extra), env=locust_env(server, images, model, face_mode, upload_field),
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:  # Locust exits 1 when a request failed: the stats say which; no stats means Locust itself failed
        with open(f"{csv_prefix}_stats.csv") as f:
            rows = {row["Name"]: row for row in csv.DictReader(f)}
    except OSError as exc:
        raise RuntimeError(f"locust exited {result.returncode} without stats ({exc}): {result.stderr[-2000:]}") from exc
    rows["_client"] = {"wall_s": wall, "cpu_share": cpu / (wall * (os.cpu_count() or 1))}
    return rows


def summary(rows: dict[str, dict], users: int, name: str = "predict") -> dict:
    """Throughput and latency percentiles of one request name from ``run_locust``'s rows."""
    row = rows[name]
    return {
        "users": users,
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "images_per_s": round(float(row["Requests/s"]), 2),
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
        "locust_cpu_share": round(rows["_client"]["cpu_share"], 3),
    }


def write_image_set(folder: Path, small: int, large: int) -> tuple[list[Path], list[Path]]:
    """Deterministic JPEGs: ``small`` 256x256 crops and ``large`` 4000x3000 photos (smooth, ~1-2 MB)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    smalls, larges = [], []
    for i in range(small):
        base = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((256, 256), Image.BICUBIC)
        noisy = np.clip(np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, (256, 256, 3)), 0, 255).astype(np.uint8)
        path = folder / f"crop_{i:03d}.jpg"
        Image.fromarray(noisy).save(path, "JPEG", quality=90)
        smalls.append(path)
    for i in range(large):
        photo = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((4000, 3000), Image.BICUBIC)
        path = folder / f"photo_{i:03d}.jpg"
        photo.save(path, "JPEG", quality=85)
        larges.append(path)
    return smalls, larges


def locust_row(server, users: int, seconds: int, images: Path, output: Path, face_mode: str | None = None,
               upload_field: str | None = None) -> dict:
    """One headless Locust run of valid images; throughput, percentiles and the client's CPU share."""
    prefix = output / f"locust_{users}u{'_' + face_mode if face_mode else ''}"
    return summary(run_locust(server, users, seconds, prefix, images=images, model=MODEL_NAME, face_mode=face_mode,
                              upload_field=upload_field), users)


def write_csv(rows: list[dict], path: Path) -> None:
    """``rows`` as CSV; the columns are every key of any row, in first-seen order."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)


def save_figure(fig, axes, path: Path) -> Path:
    """Legend and grid on every axis, then write the PNG and close the figure."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bench_parser(doc: str, output: str, repeats: int, what: str, served: bool = True) -> argparse.ArgumentParser:
    """The options benchmarks share: ``results/<output>``, timings per ``what``, and for those that also
    serve a model (``served``) the checkpoint and --skip-e2e."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if served:
        parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="(default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / output, help=f"(default: results/{output})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timings per {what} (default: %(default)s)")
    if served:
        parser.add_argument("--skip-e2e", action="store_true", help="in-process figures only")
    return parser


def median_ms(action, repeats: int) -> tuple[float, object]:
    """The median milliseconds of ``repeats`` calls of ``action``, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times), result


def announce_cpu() -> dict:
    """The CPU's model, cores and ISA flags, printed first: every figure names its CPU."""
    cpu = cpu_description()
    print(f"{cpu['model']}, {cpu['cores']} cores, ISA {' '.join(cpu['isa']) or 'baseline'}", flush=True)
    return cpu
