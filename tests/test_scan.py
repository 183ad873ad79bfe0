"""Archive scans on a real two-node Ray cluster (ray.cluster_utils.Cluster: two raylets of 1 CPU each on this
machine), started once for the module: rows spread over both nodes, equal in-process scores, errors as rows,
resumed scans, records for the review API, and a node lost mid-scan. Plus the sources and outputs alone."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from deepfake_service.project import ROOT
from deepfake_service.records.review import Filters, list_records
from deepfake_service.samples import imagegen, videogen
from deepfake_service.training.checkpoint_predictor import CheckpointPredictor
from deepfake_service.training.predictors import RayPredictor, checkpoint_predictor
from deepfake_service.training.scan import PoolSettings, plan_batches, pool_size
from deepfake_service.training.score import score
from deepfake_service.training.score_output import COLUMNS, ParquetOutput, read_rows, score_row
from deepfake_service.training.sources import list_sources, read_media
from handler.options import HandlerOptions
from handler.store import RecordSettings, connect

IMAGES, CLIPS = 240, 2
KEPT = ("label", "media", "faces", "sha256", "weights_sha256", "pdq", "error", "runtime", "precision")  # equal on both routes
BAD = {"text.jpg": b"not an image at all", "empty.png": b"", "truncated.jpg": imagegen.jpeg(seed=1, width=64, height=64)[:200]}
OPTIONS = HandlerOptions(threads=1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A few hundred tiny files: 64x64 JPEGs, two short clips with a face, and three bad files."""
    root = tmp_path_factory.mktemp("archive")
    for index in range(IMAGES):
        (root / f"photo-{index:03d}.jpg").write_bytes(imagegen.jpeg(seed=index, width=64, height=64))
    for index in range(CLIPS):
        (root / f"clip-{index}.mp4").write_bytes(videogen.clip(people=1, count=4, size=(160, 96)))
    for name, data in BAD.items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of 1 CPU each (the head and a worker), this process their driver; stopped at the end."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        started.add_node(num_cpus=1)
        started.wait_for_nodes()
        ray.init(address=started.address, log_to_driver=False)
        yield started
    finally:
        ray.shutdown()
        started.shutdown()


def ray_predictor(checkpoint: Path, address: str, actors: int = 2, **records) -> RayPredictor:
    """The tiny ViT in a pool of half-CPU actors: one per node, and room on the head for a restarted one; built in
    each actor by the builder scripts.score hands Ray (``checkpoint_predictor``: the driver never imports torch)."""
    return RayPredictor(partial(checkpoint_predictor, checkpoint, OPTIONS, "auto", **records), PoolSettings(address, actors, cpus=0.5))


@pytest.fixture(scope="module")
def scanned(cluster, archive, tiny_checkpoint, tmp_path_factory):
    """The archive scanned on the cluster and in process: (summary, rows by path) for each."""
    paths = list_sources(archive)
    output = tmp_path_factory.mktemp("scan") / "scan.parquet"
    on_ray = score(ray_predictor(tiny_checkpoint, cluster.address), paths, output, batch_size=16, progress=False)
    in_process = score(CheckpointPredictor(tiny_checkpoint, OPTIONS, "auto"), paths, output.with_name("local.parquet"), 16, False)
    rows = [{row["path"]: row for row in read_rows(file)} for file in (output, output.with_name("local.parquet"))]
    assert all(len(found) == len(read_rows(file)) for found, file in zip(rows, (output, output.with_name("local.parquet"))))
    return (on_ray, rows[0]), (in_process, rows[1])


@pytest.mark.slow
def test_a_scan_spreads_over_both_nodes_and_each_row_names_its_node(scanned, cluster, archive):
    (summary, rows), _ = scanned
    assert sorted(rows) == list_sources(archive) and len(rows) == IMAGES + CLIPS + len(BAD)
    import ray

    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert {row["node"] for row in rows.values()} == alive and len(alive) == 2
    assert summary.scored == IMAGES + CLIPS and summary.failed == len(BAD) and len(summary.nodes) == 2


@pytest.mark.slow
def test_bad_files_are_error_rows_beside_the_scored_ones(scanned, archive):
    (summary, rows), _ = scanned
    for name in BAD:
        row = rows[str(archive / name)]
        assert row["error"] and row["verdict"] is None and row["confidence"] is None
    assert rows[str(archive / "empty.png")]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert sum(summary.errors.values()) == len(BAD)


@pytest.mark.slow
def test_rows_on_the_cluster_equal_in_process_scores(scanned):
    (_, on_ray), (_, local) = scanned
    assert sorted(on_ray) == sorted(local)
    for path, row in on_ray.items():
        other = local[path]
        assert {key: row[key] for key in KEPT} == {key: other[key] for key in KEPT}, path
        if row["error"] is None:
            mine, theirs = json.loads(row["probabilities"]), json.loads(other["probabilities"])
            assert mine == pytest.approx(theirs, abs=1e-4) and other["node"] == ""
            top = sorted(mine.values())
            if top[-1] - top[-2] > 1e-3:  # a verdict is compared where the scores are clear of a tie
                assert row["verdict"] == other["verdict"], path
    assert any(row["media"] == "video" for row in on_ray.values()) and all(row["pdq"] for row in on_ray.values() if row["media"] == "image")


@pytest.mark.slow
def test_a_resumed_scan_scores_only_what_is_missing_or_changed(cluster, archive, tiny_checkpoint, tmp_path):
    folder = tmp_path / "archive"
    shutil.copytree(archive, folder)
    paths = list_sources(folder)
    output = tmp_path / "resumed.parquet"
    first = score(ray_predictor(tiny_checkpoint, cluster.address), paths[:100], output, batch_size=16, progress=False)
    (folder / "photo-000.jpg").write_bytes(imagegen.jpeg(seed=999, width=64, height=64))  # scored, then changed
    second = score(ray_predictor(tiny_checkpoint, cluster.address), paths, output, batch_size=16, progress=False)
    assert first.scored + first.failed == 100
    assert (second.skipped, second.rescored, second.scored + second.failed) == (99, 1, len(paths) - 99)
    rows = read_rows(output)
    assert sorted(row["path"] for row in rows) == paths
    changed = next(row for row in rows if row["path"].endswith("photo-000.jpg"))
    assert changed["sha256"] == hashlib.sha256((folder / "photo-000.jpg").read_bytes()).hexdigest()
    assert not output.with_name(output.name + ".parts").exists()


@pytest.mark.slow
def test_records_written_by_a_scan_are_listed_by_the_review_api(cluster, archive, tiny_checkpoint, tmp_path, store_url):
    """On SQLite and on PostgreSQL (the store a cluster's actors share), written by the actors."""
    url = store_url
    paths = list_sources(archive)[:20]
    predictor = ray_predictor(tiny_checkpoint, cluster.address, records=RecordSettings(url=url), client="scan test")
    score(predictor, paths, tmp_path / "scan.parquet", batch_size=8, progress=False)
    rows = read_rows(tmp_path / "scan.parquet")
    listed = {record["id"]: record for record in list_records(connect(url), Filters(limit=100))}
    assert {row["record"] for row in rows} == set(listed)
    for row in rows:
        record = listed[row["record"]]
        assert (record["route"], record["client"], record["sha256"]) == ("scan", "scan test", row["sha256"])
        assert record["verdict"] == row["verdict"]


@pytest.mark.slow
def test_losing_the_second_node_mid_scan_leaves_every_file_exactly_once(cluster, archive, tiny_checkpoint, tmp_path):
    """Runs last: it removes the worker node. The scan finishes on the head (Ray restarts the lost actor there
    and retries its batch) or stops with an error; either way, the output after it (and a rerun) holds each once."""
    paths = list_sources(archive)
    output = tmp_path / "lost.parquet"
    parts = output.with_name(output.name + ".parts")
    outcome: dict = {}

    def scan() -> None:
        try:
            outcome["summary"] = score(ray_predictor(tiny_checkpoint, cluster.address), paths, output, batch_size=8, progress=False,
                                       flush_rows=8)
        except Exception as error:  # noqa: BLE001 - a scan stopped by the lost node is an outcome to check, not a test error
            outcome["error"] = error

    runner = threading.Thread(target=scan, daemon=True)
    runner.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and runner.is_alive() and len(list(parts.glob("part-*.parquet"))) < 3:
        time.sleep(0.2)
    assert runner.is_alive() and len(list(parts.glob("part-*.parquet"))) >= 3, "the scan should be under way"
    cluster.remove_node(cluster.list_all_nodes()[1])
    runner.join(timeout=240)
    assert not runner.is_alive(), "the scan neither finished nor failed after the node was lost"
    if "error" in outcome:  # the rerun completes it, on the head alone
        score(ray_predictor(tiny_checkpoint, cluster.address, actors=1), paths, output, batch_size=8, progress=False)
    rows = read_rows(output)
    assert sorted(row["path"] for row in rows) == paths  # every file, each once


def test_sources_are_folders_and_lists_of_paths_or_uris(archive, tmp_path):
    paths = list_sources(archive)
    (tmp_path / "list.txt").write_text("# the archive\n" + "\n".join(paths[:3]) + "\n\n" + paths[0] + "\n")
    (tmp_path / "list.csv").write_text("label,path\nx," + "\nx,".join(paths[:2]) + "\n")
    (tmp_path / "bare.csv").write_text(paths[0] + "\n")
    assert list_sources(tmp_path / "list.txt") == paths[:3]
    assert list_sources(tmp_path / "list.csv") == paths[:2] and list_sources(tmp_path / "bare.csv") == paths[:1]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": [f"file://{p}" for p in paths[:2]]}), tmp_path / "list.parquet")
    assert list_sources(tmp_path / "list.parquet") == [f"file://{p}" for p in paths[:2]]
    assert list_sources(f"file://{archive}") == [f"file://{p}" for p in paths]
    assert read_media(f"file://{paths[0]}") == Path(paths[0]).read_bytes()
    assert "cannot read" in read_media(f"file://{tmp_path}/missing.jpg").detail


def test_an_interrupted_parquet_output_keeps_whole_parts_and_merges_each_path_once(tmp_path):
    from deepfake_service.training.predictors import Scored

    output = ParquetOutput(tmp_path / "out.parquet")
    output.write([score_row(Scored("/a", error="x: broken", sha256="1")), score_row(Scored("/b", error="x: broken"))])
    (output.parts / "part-9-000001.tmp").write_bytes(b"half a part")  # a writer killed mid-write
    later = ParquetOutput(tmp_path / "out.parquet")
    assert later.done() == {"/a": "1", "/b": ""}
    later.write([score_row(Scored("/a", error="y: changed", sha256="2"))])
    later.finish()
    rows = read_rows(tmp_path / "out.parquet")
    assert [(row["path"], row["error"], row["sha256"]) for row in rows] == [("/a", "y: changed", "2"), ("/b", "x: broken", None)]
    assert list(rows[0]) == list(COLUMNS) and not output.parts.exists()


def test_the_scan_command_loads_no_torch_on_the_driver():
    """A Ray driver only hands the predictor's builder to its actors: importing the command loads neither torch
    nor transformers (5 s of a scan's start)."""
    probe = "import sys, scripts.score; print(sorted({'torch', 'transformers', 'openvino'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_pool_fills_the_cluster_unless_told():
    assert pool_size(PoolSettings(cpus=1.0), {"CPU": 4.0}) == 4
    assert pool_size(PoolSettings(cpus=0.5, gpus=1.0), {"CPU": 4.0, "GPU": 2.0}) == 2
    assert pool_size(PoolSettings(actors=3), {"CPU": 1.0}) == 3
    assert PoolSettings(cpus=2.5).threads == 2 and PoolSettings(cpus=0.5).threads == 1


def test_videos_go_first_alone_and_the_last_image_batches_shrink_so_actors_end_together():
    paths = [f"photos/{n:03d}.jpg" for n in range(100)]
    paths[10], paths[57] = "clips/a.MP4", "s3://bucket/b.webm"
    batches = plan_batches(paths, chunk=8, actors=2)
    assert batches[:2] == [[10], [57]]
    assert sorted(i for batch in batches for i in batch) == list(range(100))  # every file once
    images = batches[2:]
    assert all(paths[i].endswith(".jpg") for batch in images for i in batch)
    assert [i for batch in images for i in batch] == [i for i in range(100) if i not in (10, 57)]  # in order
    sizes = [len(batch) for batch in images]
    assert sizes[0] == 8 and max(sizes) == 8 and sizes == sorted(sizes, reverse=True)
    assert sizes[-2:] == [1, 1]  # the last batch each actor takes is one image
    assert plan_batches(paths[:3], chunk=8, actors=4) == [[0], [1], [2]]


def test_an_archive_scores_as_its_worker_would_with_the_checkpoints_numbers(tiny_checkpoint, tmp_path):
    from deepfake_service.packaging.archive import build_mar
    from deepfake_service.training.checkpoint_predictor import archive_predictor
    from tests.servers import model_config

    mar = build_mar(tiny_checkpoint, "tiny-archive", "7.1", model_config=model_config(tmp_path / "mc.yaml", handler={"runtime": "torch",
                    "precision": "fp32"}), export_dir=tmp_path)
    paths = [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    Path(paths[0]).write_bytes(imagegen.jpeg(seed=3, width=64, height=64))
    Path(paths[1]).write_bytes(imagegen.png(seed=4, width=64, height=64))
    packed = archive_predictor(mar, "off", threads=1).predict(paths)
    plain = CheckpointPredictor(tiny_checkpoint, OPTIONS, "off").predict(paths)
    for mine, theirs in zip(packed, plain):
        assert (mine.prediction["model"], mine.prediction["version"]) == ("tiny-archive", "7.1")
        assert mine.prediction["probabilities"] == pytest.approx(theirs.prediction["probabilities"], abs=1e-4)
        assert mine.weights_sha256 == theirs.weights_sha256 and mine.pdq == theirs.pdq
