"""What keeping records costs (docs/records.md): the PDQ hash, the "seen before" lookup among labelled
hashes, and the insert of a batch's records, then the served archive under Locust with records off and on.
Prints figures and writes results/records/records.csv; it asserts nothing.

  python -m loadtest.records_bench --checkpoint checkpoints/demo                 # SQLite
  python -m loadtest.records_bench --checkpoint checkpoints/demo --postgres      # and a throw-away PostgreSQL

1. Lookup: ``HashIndex.nearest`` among ``--labelled`` random labelled hashes (median of 500 lookups).
2. Per image, in-process: the hash of a decoded 1024x768 photo and of a 256-px one, the refresh of the
   index from the store holding ``--labelled`` labelled records, and one batch of 8 records inserted.
3. What keeping the media adds per image (``keep_media``, handler/kept_media.py): the thumbnail and crop JPEGs
   of a 1024x768 photo with one face (faces auto), their bytes, and their insert beside the records.
4. In-process core, batches of 8 1024x768 photos through the demo ViT with records off, on keeping no media, and
   on keeping crops and thumbnails, interleaved batch by batch (what the records stage adds, model included).
5. End to end: the shipped archive, 8 Locust users for ``--seconds`` each, records off, then on (with the shipped
   ``keep_media``) with the store holding ``--labelled`` labelled records (so every image is matched against them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photos
from sqlalchemy import insert

from deepfake_service.packaging.archive import build_mar
from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.project import MODEL_NAME, handler_options
from deepfake_service.records import migrate
from deepfake_service.samples import imagegen
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.fingerprint import HashIndex, Labelled, fingerprint
from handler.kept_media import media_rows
from handler.recorder import Recorder, new_id
from handler.store import RecordSettings, connect, labels, now, records
from loadtest.harness import announce_cpu, bench_parser, local_server, locust_row, median_ms, write_csv

BATCH = 8


def random_hashes(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [row.tobytes() for row in rng.integers(0, 256, (count, 32), dtype=np.uint8)]


def fill_labelled(url: str, count: int) -> None:
    """``count`` image records with random hashes, each labelled fake once."""
    engine = connect(url)
    moment = now()
    rows = [{"id": new_id(), "created_at": moment, "media": "image", "pdq": h.hex(), "pdq_quality": 100, "status": 200}
            for h in random_hashes(count, seed=1)]
    with engine.begin() as connection:
        for start in range(0, count, 10_000):
            chunk = rows[start : start + 10_000]
            connection.execute(insert(records), chunk)
            connection.execute(insert(labels), [{"record_id": r["id"], "label": "fake", "reviewer": "bench", "created_at": moment}
                                                for r in chunk])
    engine.dispose()


def lookup_ms(count: int) -> float:
    index = HashIndex([Labelled(str(i), "fake", "t", h) for i, h in enumerate(random_hashes(count))])
    queries = iter(random_hashes(500, seed=2) * 2)
    return median_ms(lambda: index.nearest(next(queries)), 500)[0]


def stage_costs(url: str, kind: str, labelled: int) -> dict:
    large = Image.fromarray(photos.astronaut()).resize((1024, 768))
    small = large.resize((256, 192))
    recorder = Recorder(RecordSettings(url=url, refresh_s=0), {"name": "bench"})

    def batch() -> None:
        rows = [{"id": new_id(), "created_at": now(), "media": "image", "status": 200, "verdict": "real", "p_fake": 0.1,
                 "labels": ["Real", "Fake"], "logits": [0.1, -0.2], "pdq": "00" * 32, "pdq_quality": 100} for _ in range(BATCH)]
        recorder.keep(rows)

    batch()
    insert_ms = median_ms(batch, 50)[0] / BATCH
    refresh_ms = median_ms(lambda: recorder.refresh(force=True), 3)[0]
    return {"store": kind, "labelled": labelled, "hash_1024x768_ms": round(median_ms(lambda: fingerprint(large), 50)[0], 2),
            "hash_256_ms": round(median_ms(lambda: fingerprint(small), 50)[0], 2),
            "insert_per_image_ms": round(insert_ms, 2), "refresh_ms": round(refresh_ms, 1),
            "lookup_ms": round(median_ms(lambda: recorder.match(fingerprint(small)), 50)[0] - median_ms(lambda: fingerprint(small), 50)[0], 3)}


def photo_requests() -> list[Request]:
    return [Request(imagegen.photo_jpeg(Image.fromarray(photos.astronaut()).resize((1024, 768)), 90))] * BATCH


def media_costs(checkpoint: Path, url: str) -> dict:
    """What ``crops+thumbnail`` adds per image: making the JPEGs of a batch of 8 photos with one face each
    (faces auto), their bytes, and inserting records with them vs without (each median of 20 batches)."""
    options = with_detector_file(handler_options(), checkpoint)
    classifier = DeepfakeClassifier.from_checkpoint(checkpoint, options, records=RecordSettings(url=url, refresh_s=0))
    recorder, fake_label = classifier.records, classifier.decision.fake_label
    analyses = classifier.analyse(photo_requests())
    make_ms = median_ms(lambda: [media_rows(a, "x", "crops+thumbnail", recorder.shape, fake_label) for a in analyses], 20)[0] / BATCH
    kept = [media_rows(a, "x", "crops+thumbnail", recorder.shape, fake_label) for a in analyses]

    def insert_batch(with_media: bool) -> None:
        rows = [{"id": new_id(), "created_at": now(), "media": "image", "status": 200} for _ in range(BATCH)]
        recorder.keep(rows)
        if with_media:
            recorder.keep_media([{**m, "record_id": row["id"]} for row, ms in zip(rows, kept) for m in ms])

    plain_ms = median_ms(lambda: insert_batch(False), 20)[0] / BATCH
    with_ms = median_ms(lambda: insert_batch(True), 20)[0] / BATCH
    sizes = [sum(len(m["data"]) for m in ms) for ms in kept]
    return {"media_make_ms": round(make_ms, 2), "media_insert_ms": round(with_ms - plain_ms, 2),
            "media_kb_per_image": round(statistics.mean(sizes) / 1024, 1), "media_files_per_image": len(kept[0])}


def core_cost(checkpoint: Path, url: str, repeats: int) -> dict:
    """Batches of 8 through three classifiers of the same checkpoint, records off, on keeping no media and on
    keeping crops and thumbnails, interleaved batch by batch so that all see the same CPU (separate runs
    differed by more than the cost measured)."""
    options = dataclasses.replace(with_detector_file(handler_options(), checkpoint), face_mode="off")
    requests = photo_requests()
    classifiers = {"off": DeepfakeClassifier.from_checkpoint(checkpoint, options),
                   "on": DeepfakeClassifier.from_checkpoint(checkpoint, options, records=RecordSettings(url=url, keep_media="none")),
                   "media": DeepfakeClassifier.from_checkpoint(checkpoint, options, records=RecordSettings(url=url))}
    timings: dict[str, list[float]] = {label: [] for label in classifiers}
    for classifier in classifiers.values():
        classifier.predict_batch(requests)  # warm-up (and, records on, the load of the labelled hashes)
    for _ in range(3 * repeats):
        for label, classifier in classifiers.items():
            timings[label].append(median_ms(lambda: classifier.predict_batch(requests), 1)[0] / BATCH)
    off, on, media = (statistics.median(timings[label]) for label in classifiers)
    runtime = classifiers["on"].runtime
    return {"core_ms_per_image_off": round(off, 2), "core_ms_per_image_on": round(on, 2), "core_added_ms": round(on - off, 2),
            "core_ms_per_image_media": round(media, 2), "core_media_added_ms": round(media - off, 2), "runtime": f"{runtime.name} {runtime.precision}"}


def end_to_end(checkpoint: Path, url: str, seconds: int, workdir: Path) -> list[dict]:
    images = workdir / "photos"
    images.mkdir()
    for index in range(8):
        picture = Image.fromarray(photos.astronaut()).rotate(index * 3).resize((256 + 96 * (index % 3), 256))
        (images / f"{index}.jpg").write_bytes(imagegen.photo_jpeg(picture, 90))
    store = workdir / "model_store"
    build_mar(checkpoint, MODEL_NAME, "1.0", export_dir=store)
    rows = []
    for label, setting in (("off", "off"), ("on", url)):
        with local_server(workdir / f"serve-{label}", store, [f"{MODEL_NAME}={MODEL_NAME}.mar"], records_url=setting) as server:
            locust_row(server, 8, min(seconds, 10), images, workdir)  # warm-up, not reported
            row = {"records": label, **locust_row(server, 8, seconds, images, workdir)}
        rows.append(row)
        print(f"  end to end, records {label:3s}, 8 users: {row['images_per_s']:6.2f} img/s, p50 {row['p50_ms']:.0f} ms, "
              f"p95 {row['p95_ms']:.0f} ms, {row['failures']} failures", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "records", 10, "batch")
    parser.add_argument("--labelled", type=int, default=100_000, help="labelled hashes in the store (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=30, help="Locust seconds per setting (default: %(default)s)")
    parser.add_argument("--postgres", action="store_true", help="also time a throw-away PostgreSQL (Debian's server binaries)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    cpu = announce_cpu()
    lookup = lookup_ms(args.labelled)
    print(f"  lookup among {args.labelled} labelled hashes: {lookup:.3f} ms ({cpu['model']})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="records-bench-") as scratch, contextlib.ExitStack() as stack:
        workdir = Path(scratch)
        stores = {"sqlite": f"sqlite:///{workdir / 'records.sqlite3'}"}
        if args.postgres:
            from deepfake_service.records.postgres import postgres

            stores["postgresql"] = stack.enter_context(postgres())
        for kind, url in stores.items():
            migrate(url)
            fill_labelled(url, args.labelled)
            row = {"cpu": cpu["model"], "lookup_among_labelled_ms": round(lookup, 3), **stage_costs(url, kind, args.labelled)}
            rows.append(row)
            print(f"  {kind}: hash {row['hash_1024x768_ms']} ms (1024x768) / {row['hash_256_ms']} ms (256 px), insert "
                  f"{row['insert_per_image_ms']} ms/image in batches of {BATCH}, match {row['lookup_ms']} ms, refresh of "
                  f"{args.labelled} labelled {row['refresh_ms']} ms", flush=True)
        for kind, url in stores.items():
            media = media_costs(args.checkpoint, url)
            next(row for row in rows if row["store"] == kind).update(media)
            print(f"  {kind}: keeping the media (crops+thumbnail, a 1024x768 photo with one face): {media['media_files_per_image']} "
                  f"JPEGs, {media['media_kb_per_image']} kB per image; making them {media['media_make_ms']} ms, inserting them "
                  f"+{media['media_insert_ms']} ms per image", flush=True)
        core = core_cost(args.checkpoint, stores["sqlite"], args.repeats)
        print(f"  core, batches of {BATCH} 1024x768 photos, faces off ({core['runtime']}): {core['core_ms_per_image_off']} ms/image "
              f"records off, {core['core_ms_per_image_on']} on keeping no media (+{core['core_added_ms']} ms), "
              f"{core['core_ms_per_image_media']} keeping crops and thumbnail (+{core['core_media_added_ms']} ms)", flush=True)
        rows[0].update(core)
        if not args.skip_e2e:
            for row in end_to_end(args.checkpoint, stores["sqlite"], args.seconds, workdir):
                rows.append({"cpu": cpu["model"], "store": "sqlite", "labelled": args.labelled, **row})
    write_csv(rows, args.output / "records.csv")
    print(f"wrote {args.output}/records.csv")


if __name__ == "__main__":
    main()
