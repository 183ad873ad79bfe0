"""Soak: minutes of steady Locust load on a TorchServe of its own, sampling memory and error counts.

Serves --model-store/<name>.mar on free loopback ports, runs headless Locust (the bad-input task
included) for --minutes, and every --interval seconds samples the frontend's (Java) and the workers'
resident memory and TorchServe's Requests2XX/4XX/5XX counters. Writes soak.csv and soak.png to
--output and prints the RSS growth and the 5xx count. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path

import psutil
import requests

from deepfake_service.project import MODEL_NAME, MODEL_STORE, ROOT
from deepfake_service.serving.server import PID_FILE
from loadtest.harness import local_server, locust_command, locust_env, save_figure, write_csv, write_image_set

COUNTERS = ("Requests2XX", "Requests4XX", "Requests5XX")


def memory_mb(run_dir: Path) -> tuple[float, float]:
    """(frontend RSS, sum of worker RSS) in MB for the TorchServe started from ``run_dir``."""
    root = psutil.Process(int((run_dir / PID_FILE).read_text()))
    frontend = workers = 0
    for process in root.children(recursive=True):
        try:
            command = " ".join(process.cmdline())
            rss = process.memory_info().rss
        except psutil.Error:
            continue
        if "org.pytorch.serve.ModelServer" in command:
            frontend += rss
        elif "model_service_worker" in command:
            workers += rss
    return frontend / 2**20, workers / 2**20


def counters(metrics_url: str) -> dict[str, float]:
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    found = {}
    for name in COUNTERS:
        values = re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.eE+]+)$", text, re.MULTILINE)
        found[name] = sum(float(v) for v in values)
    return found


def soak(store: Path, name: str, minutes: float, users: int, interval: float, output: Path) -> list[dict]:
    output.mkdir(parents=True, exist_ok=True)
    images = output / "images"
    write_image_set(images, small=16, large=1)
    rows = []
    seconds = int(minutes * 60)
    with local_server(output, store, [f"{name}={name}.mar"]) as server:
        command = locust_command(server, users, seconds, output / "locust")
        env = locust_env(server, images, name)
        started = time.monotonic()
        with open(output / "locust.log", "w") as log:
            locust = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            try:
                while locust.poll() is None and time.monotonic() - started < seconds + 120:
                    frontend, workers = memory_mb(server.run_dir)
                    row = {"seconds": round(time.monotonic() - started, 1), "frontend_rss_mb": round(frontend, 1),
                           "workers_rss_mb": round(workers, 1), **counters(server.metrics_url)}
                    rows.append(row)
                    print(f"  {row['seconds']:7.1f} s  frontend {frontend:7.1f} MB  workers {workers:7.1f} MB  "
                          f"2xx {row['Requests2XX']:.0f}  4xx {row['Requests4XX']:.0f}  5xx {row['Requests5XX']:.0f}", flush=True)
                    time.sleep(interval)
            finally:
                if locust.poll() is None:
                    locust.terminate()
                locust.wait(timeout=60)
    return rows


def report(rows: list[dict], output: Path) -> None:
    write_csv(rows, output / "soak.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, errors) = plt.subplots(1, 2, figsize=(11, 4))
    seconds = [r["seconds"] for r in rows]
    memory.plot(seconds, [r["frontend_rss_mb"] for r in rows], label="frontend (Java)")
    memory.plot(seconds, [r["workers_rss_mb"] for r in rows], label="workers (Python)")
    memory.set(xlabel="seconds", ylabel="RSS (MB)", title="Resident memory")
    for name in COUNTERS:
        errors.plot(seconds, [r[name] for r in rows], label=name)
    errors.set(xlabel="seconds", ylabel="responses (cumulative)", title="Responses by class")
    save_figure(fig, [memory, errors], output / "soak.png")
    first, last = rows[1] if len(rows) > 1 else rows[0], rows[-1]  # rows[0] is before the first request
    print(f"\nsoak: {last['seconds']:.0f} s, {last['Requests2XX']:.0f} 2xx, {last['Requests4XX']:.0f} 4xx (bad-input task), "
          f"{last['Requests5XX']:.0f} 5xx")
    print(f"frontend RSS {first['frontend_rss_mb']:.0f} -> {last['frontend_rss_mb']:.0f} MB, "
          f"workers RSS {first['workers_rss_mb']:.0f} -> {last['workers_rss_mb']:.0f} MB")
    print(f"wrote {output}/soak.csv, soak.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="(default: %(default)s)")
    parser.add_argument("--name", default=MODEL_NAME, help="archive <name>.mar to serve (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=10, help="(default: %(default)s)")
    parser.add_argument("--users", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "soak", help="(default: results/soak)")
    args = parser.parse_args(argv)
    report(soak(args.model_store, args.name, args.minutes, args.users, args.interval, args.output), args.output)


if __name__ == "__main__":
    main()
