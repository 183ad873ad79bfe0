"""What a scan gains from Ray (docs/scanning.md): the same files through ``python -m scripts.score`` in process, on an
embedded Ray, and on a real multi-node Ray cluster on this machine (``ray start --head`` plus ``ray start --address``,
token authentication on) of one and of two 1-CPU nodes. Prints a table and writes results/scan/scan.csv; it
asserts nothing.

A node of 1 CPU gets one core: each ``ray start`` and everything it starts (raylet, workers, the actor) runs pinned to
a core of its own (``sched_setaffinity``; the head's core also runs the GCS and the scan command, as a head machine
would), so that one node cannot borrow the second core for its video decoder's threads, OpenCV or Ray's own
processes, and two nodes are two 1-core machines. ``--no-pin`` leaves them free on every core.

The set: ``--photos`` photos built from scikit-image's public-domain astronaut (a face) and coffee (none), each
one a little different (crop, size, JPEG quality), half with a face, and ``--clips`` short clips with a face;
face mode auto, the shipped model config. Each configuration is one run of the command into its own Parquet
file, in --repeats rounds of every configuration (so a noisy neighbour hits them alike); files/s are counted over
the whole command (start, model load and Ray included; a cluster's own start is not), over the scoring (the
command's summary: from the first path handed out, so Ray's pool start is in and the in-process model load is
not) and steady (after the first batch came back: what a long scan runs at); the table gives medians. Each
run's rows are compared with the first in-process run's.
The in-process command runs at the niceness Ray gives its workers (15), so a busy neighbour slows both alike.

  python -m loadtest.scan_bench --checkpoint checkpoints/demo      (make bench-scan)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from deepfake_service.ports import free_port
from deepfake_service.project import ROOT
from deepfake_service.samples import videogen
from loadtest.harness import announce_cpu, bench_parser, write_csv

RAY_ENV = {"RAY_AUTH_MODE": "token"}  # Ray 2.60's token authentication: the head, joining nodes and drivers
# Ray runs its workers at niceness 15 (the raylet's worker_niceness); the in-process command gets the same, so that
# another program busy on the machine takes CPU from both alike.
RAY_WORKER_NICENESS = 15


def photo_set(folder: Path, count: int, clips: int) -> list[Path]:
    """``count`` distinct JPEGs (half astronaut, half coffee, 384-768 px, quality 80-95) and ``clips`` 2-s clips."""
    from skimage import data as photos

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.fromarray(photos.astronaut()), Image.fromarray(photos.coffee())]
    written = []
    for index in range(count):
        image = sources[index % 2]
        inset = index % 17
        cropped = image.crop((inset, inset, image.width - inset, image.height - inset))
        side = 384 + (index * 37) % 385
        resized = cropped.resize((side, round(side * cropped.height / cropped.width)), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        resized.save(buffer, "JPEG", quality=80 + index % 16)
        path = folder / f"photo-{index:04d}.jpg"
        path.write_bytes(buffer.getvalue())
        written.append(path)
    for index in range(clips):
        path = folder / f"clip-{index}.mp4"
        path.write_bytes(videogen.clip(people=1, count=20 + index, fps=10, size=(640, 360)))
        written.append(path)
    return written


def run_score(checkpoint: Path, images: Path, output: Path, extra: list[str], env: dict[str, str] | None = None, nice: int = 0,
              cores: set[int] | None = None) -> dict:
    """One run of the scoring command (at niceness ``nice``, on ``cores``: None for all): wall seconds and the
    summary's files/s."""
    command = [sys.executable, "-m", "scripts.score", "--checkpoint", str(checkpoint), "--images", str(images), "--output", str(output),
               "--face-mode", "auto", "--no-progress", "--restart", *extra]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=3600,
                          preexec_fn=partial(confine, nice, cores))
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    summary = done.stdout
    rate = float(re.search(r"= ([0-9.]+) files/s", summary).group(1))
    steady = float(re.search(r"\(([0-9.]+) files/s after the first batch\)", summary).group(1))
    print(summary.strip(), flush=True)
    return {"wall_s": round(wall, 1), "scoring_files_per_s": rate, "steady_files_per_s": steady, "summary": summary.strip().splitlines()}


def confine(nice: int, cores: set[int] | None) -> None:
    """In a child before it runs: niceness ``nice`` and, when given, only ``cores`` (inherited by what it starts)."""
    if nice:
        os.nice(nice)
    if cores:
        os.sched_setaffinity(0, cores)


def node_cores(nodes: int, cpus: int) -> list[set[int]] | None:
    """The cores each of ``nodes`` nodes of ``cpus`` CPUs is pinned to, apart; None when this machine has too few."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < nodes * cpus:
        return None
    return [set(mine[n * cpus : (n + 1) * cpus]) for n in range(nodes)]


@contextlib.contextmanager
def ray_cluster(nodes: int, cpus: int = 1, cores: list[set[int]] | None = None):
    """A Ray cluster of ``nodes`` nodes of ``cpus`` CPUs on this machine, each a ``ray start --block`` process of
    ours (stopped by its id at the end), node n on ``cores[n]`` when given; yields the head's address."""
    port = free_port(taken=set(range(10001, 20000)))  # not Ray's own: the client server's 10001, its workers' 10002-19999
    env = {**os.environ, **RAY_ENV}
    ray = str(Path(sys.executable).with_name("ray"))
    common = ["--block", "--num-cpus", str(cpus), "--num-gpus", "0", "--disable-usage-stats"]
    pinned = partial(confine, 0, cores[0] if cores else None)
    started = [subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=pinned)]
    address = f"127.0.0.1:{port}"
    try:
        wait_for_nodes(address, 1, env)
        for n in range(1, nodes):
            started.append(subprocess.Popen([ray, "start", "--address", address, *common], env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=partial(confine, 0, cores[n] if cores else None)))
        wait_for_nodes(address, nodes, env)
        yield address
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)  # ray start --block stops the node's processes it started
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_for_nodes(address: str, count: int, env: dict[str, str], timeout: float = 120.0) -> None:
    """Until the cluster at ``address`` has ``count`` live nodes (bounded by ``timeout``)."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True, timeout=60)
        if found.returncode == 0 and found.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {count} nodes in {timeout:.0f} s")


def agreement(reference: Path, other: Path) -> dict:
    """Rows of ``other`` against ``reference``: same paths, largest probability difference, verdicts that differ."""
    mine = {row["path"]: row for row in pq.read_table(reference).to_pylist()}
    theirs = {row["path"]: row for row in pq.read_table(other).to_pylist()}
    diff, verdicts = 0.0, 0
    for path, row in mine.items():
        if row["probabilities"] and theirs.get(path, {}).get("probabilities"):
            a, b = json.loads(row["probabilities"]), json.loads(theirs[path]["probabilities"])
            diff = max(diff, *(abs(a[k] - b[k]) for k in a))
            verdicts += row["verdict"] != theirs[path]["verdict"]
    return {"same_paths": set(mine) == set(theirs), "max_probability_diff": f"{diff:.1e}", "verdicts_differing": verdicts}


def configurations(cluster_nodes: tuple[int, ...] = (1, 2)) -> list[tuple[str, list[str], int]]:
    """(name, extra score options, cluster nodes: 0 for none) of each measured configuration."""
    return [("in process (torch threads: all cores)", [], 0),
            ("embedded Ray (1 actor per CPU, 1 thread each)", ["--ray"], 0),
            *((f"Ray cluster, {n} node(s) of 1 CPU", ["--cpus-per-actor", "1"], n) for n in cluster_nodes)]


def measure(name: str, extra: list[str], nodes: int, checkpoint: Path, images: Path, output: Path, pin: bool) -> dict:
    """One run of one configuration, on a cluster of ``nodes`` started for it (0: none), each node on a core of its
    own and the command on the head's when ``pin``."""
    print(f"\n== {name}", flush=True)
    if not nodes:
        return {"configuration": name, **run_score(checkpoint, images, output, extra, nice=0 if "--ray" in extra else RAY_WORKER_NICENESS)}
    cores = node_cores(nodes, 1) if pin else None
    with ray_cluster(nodes, cores=cores) as address:
        return {"configuration": name, "pinned": cores is not None,
                **run_score(checkpoint, images, output, ["--ray", address, *extra], RAY_ENV, cores=cores[0] if cores else None)}


def median_of(rows: list[dict], name: str, key: str) -> float:
    return statistics.median(row[key] for row in rows if row["configuration"] == name)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "scan", repeats=2, what="configuration (rounds, each configuration once per round)")
    parser.add_argument("--photos", type=int, default=480, help="photos in the set (default: %(default)s; a few minutes per configuration)")
    parser.add_argument("--clips", type=int, default=6, help="clips in the set (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="files per batch (default: %(default)s)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="cluster nodes on every core, not one core each")
    args = parser.parse_args(argv)
    cpu = announce_cpu()
    args.output.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    names = [name for name, _, _ in configurations()]
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as scratch:
        images = Path(scratch) / "media"
        files = photo_set(images, args.photos, args.clips)
        print(f"{len(files)} files ({args.photos} photos, half with a face; {args.clips} clips); {args.repeats} round(s)", flush=True)
        reference = Path(scratch) / "reference.parquet"
        for round_ in range(args.repeats):
            for index, (name, extra, nodes) in enumerate(configurations()):
                output = reference if (round_, index) == (0, 0) else Path(scratch) / f"{round_}-{index}.parquet"
                row = measure(name, ["--batch-size", str(args.batch_size), *extra], nodes, args.checkpoint, images, output, args.pin)
                row.update(round=round_ + 1, files=len(files), files_per_s=round(len(files) / row["wall_s"], 2), **agreement(reference, output))
                row["summary"] = " | ".join(row["summary"])
                rows.append(row)
    write_csv(rows, args.output / "scan.csv")
    print(f"\n{cpu['model']}, {cpu['cores']} cores, ISA {' '.join(cpu['isa'])}; {time.strftime('%Y-%m-%d')}; {len(files)} files, "
          f"median of {args.repeats} round(s); cluster nodes "
          + ("on a core each" if all(row.get("pinned", True) for row in rows) else "on every core (not pinned)"))
    print(f"{'configuration':48} {'files/s: command':>17} {'scoring':>8} {'steady':>7}  rows vs in process (worst round)")
    for name in names:
        mine = [row for row in rows if row["configuration"] == name]
        worst = max(float(row["max_probability_diff"]) for row in mine)
        print(f"{name:48} {median_of(rows, name, 'files_per_s'):>17.2f} {median_of(rows, name, 'scoring_files_per_s'):>8.2f} "
              f"{median_of(rows, name, 'steady_files_per_s'):>7.2f}  "
              f"max |dp| {worst:.1e}, verdicts differing {max(row['verdicts_differing'] for row in mine)}, "
              f"same files {all(row['same_paths'] for row in mine)}")
    for label, top, bottom, target in (("embedded Ray / in process", names[1], names[0], 0.9), ("2 nodes / 1 node", names[3], names[2], 1.8)):
        for key, what in (("files_per_s", "command"), ("scoring_files_per_s", "scoring"), ("steady_files_per_s", "steady")):
            ratio = median_of(rows, top, key) / median_of(rows, bottom, key)
            print(f"{label + f' ({what})':48} {ratio:.2f}x (target >= {target})")
    print(f"wrote {args.output / 'scan.csv'}")


if __name__ == "__main__":
    main()
