"""A reviewed set: the labelled records of a store with what the model saw of them, for training and evaluation.

A record counts when its latest label is real or fake (``unsure`` is no truth; probes are left out, as review
leaves them out) and it kept crops (``record_media`` rows of kind ``crop``: an image's classified crops, a video's
deciding frames per person), each a JPEG at the model's input size. The label names the model uses come from
its ``config.id2label`` (``label_names``); the records keep the reviewer's real or fake.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from deepfake_service.project import RECORDS_CONFIG
from deepfake_service.records import URL_ENV, read_settings, redacted
from deepfake_service.records.review import REVIEWED, ReviewError
from handler.fingerprint import MIN_QUALITY
from handler.store import MATCHED_LABELS, connect, latest_labels, record_media, records


class NoRealFakeLabels(ReviewError):
    """The model has no label named real or no label named fake, so reviews cannot be its truth."""

    error = "no real and fake labels"


CROP_CHUNK = 32  # kept crops read from the store at a time (JPEGs at the model's input size: tens of KB each)


@dataclass(frozen=True)
class ReviewedRecord:
    """One labelled record: ``label`` is the reviewer's real | fake; ``pdq`` the hash of the whole picture
    (None when absent or below ``MIN_QUALITY``, which PDQ's guidance says not to match); ``crops`` how many
    crops it kept (``ReviewedSet.kept_crops`` reads them)."""

    id: str
    media: str
    sha256: str | None
    pdq: bytes | None
    label: str
    crops: int


def _nothing() -> Iterator[tuple[str, bytes]]:
    return iter(())


@dataclass(frozen=True)
class ReviewedSet:
    """The records of ``store`` (its URL without password) that count; ``skipped``: how many labelled records
    were left out and why (``without_crops``: kept no crop, e.g. ``keep_media: none``); ``read_crops``: reads
    (record id, JPEG bytes) of the kept crops from the store, record by record in shown order, a chunk at a time."""

    store: str
    records: list[ReviewedRecord]
    skipped: dict[str, int] = field(default_factory=dict)
    read_crops: Callable[[], Iterator[tuple[str, bytes]]] = field(default=_nothing, repr=False, compare=False)

    @property
    def crops(self) -> int:
        return sum(r.crops for r in self.records)

    def kept_crops(self) -> Iterator[tuple[ReviewedRecord, int, bytes]]:
        """(record, its crop's number in shown order, JPEG bytes) for each crop of the set's records, read from the
        store as they are consumed, so a large store never sits in memory; ``ReviewError`` when it cannot be read."""
        by_id = {r.id: r for r in self.records}
        numbers: dict[str, int] = {}
        for record_id, data in self.read_crops():
            if record_id in by_id:  # a record labelled since the set was read is not in it
                numbers[record_id] = numbers.get(record_id, -1) + 1
                yield by_id[record_id], numbers[record_id], data

    def describe(self) -> dict:
        """What a run's report says about the set it used."""
        return {"store": self.store, "records": len(self.records), "crops": self.crops, "skipped": self.skipped,
                "per_label": {label: sum(r.label == label for r in self.records) for label in MATCHED_LABELS}}


def add_records_arguments(parser) -> None:
    """The options that pick a reviewed set, shared by the train and evaluate commands."""
    parser.add_argument("--records", nargs="?", const="", metavar="URL",
                        help="a record store's reviewed records (a SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; "
                             "without one: the store of config/records.yaml or DEEPFAKE_RECORDS_URL)")
    parser.add_argument("--records-model", help="with --records: only records answered by this model name")
    parser.add_argument("--records-version", help="with --records: only records answered by this model version")
    parser.add_argument("--records-since", type=utc_moment, metavar="TIME",
                        help="with --records: only records made at or after this ISO date or time (UTC when no zone)")


def label_names(model_labels: Sequence[str]) -> dict[str, str]:
    """{"real": <model's label>, "fake": <model's label>}: the model's labels named real and fake, in any case;
    ``NoRealFakeLabels`` when one is missing."""
    found = {name.lower(): name for name in model_labels}
    missing = [label for label in MATCHED_LABELS if label not in found]
    if missing:
        raise NoRealFakeLabels(f"the model's labels {list(model_labels)} have no {' and no '.join(missing)} label (any case): "
                               "reviewed records are labelled real or fake, so they can only teach or test a model that has both")
    return {label: found[label] for label in MATCHED_LABELS}


def utc_moment(value: str) -> datetime.datetime:
    """An ISO date or time as an aware UTC time (UTC when it names no zone: SQLite keeps none); ``ValueError``."""
    parsed = datetime.datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)


def _pdq(hex_hash: str | None, quality: int | None) -> bytes | None:
    return bytes.fromhex(hex_hash) if hex_hash and (quality or 0) >= MIN_QUALITY else None


def reviewed_set(url: str, model: str | None = None, version: str | None = None,
                 since: datetime.datetime | None = None) -> ReviewedSet:
    """The records of the store at ``url`` ("": the configured one, ``read_settings``) that count (see the module),
    oldest first, of one model name and version when given and created at ``since`` or later; ``ReviewError``
    when there is no store or it cannot be read."""
    url = url or read_settings().url
    if url in ("", "off"):
        raise ReviewError(f"no record store to read: records are off in {RECORDS_CONFIG.name} and {URL_ENV} is unset; give --records URL")
    latest = latest_labels()
    query = (select(records.c.id, records.c.media, records.c.sha256, records.c.pdq, records.c.pdq_quality, latest.c.label)
             .join(latest, latest.c.record_id == records.c.id)
             .where(REVIEWED, latest.c.label.in_(MATCHED_LABELS)).order_by(records.c.created_at, records.c.id))
    for column, wanted in ((records.c.model, model), (records.c.version, version)):
        if wanted is not None:
            query = query.where(column == wanted)
    if since is not None:
        query = query.where(records.c.created_at >= since)
    chosen = record_media.c.record_id.in_(query.with_only_columns(records.c.id).order_by(None).scalar_subquery())
    counts = select(record_media.c.record_id, func.count()).where(record_media.c.kind == "crop", chosen).group_by(record_media.c.record_id)
    crops = (select(record_media.c.record_id, record_media.c.data).where(record_media.c.kind == "crop", chosen)
             .order_by(record_media.c.record_id, record_media.c.position))
    try:
        engine = connect(url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(query).all()
                kept = dict(connection.execute(counts).all())
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise _unreadable(url, exc) from None
    found = [ReviewedRecord(r.id, r.media, r.sha256, _pdq(r.pdq, r.pdq_quality), r.label, kept[r.id]) for r in rows if r.id in kept]
    return ReviewedSet(redacted(url), found, {"without_crops": len(rows) - len(found)}, lambda: _streamed(url, crops))


def _unreadable(url: str, exc: SQLAlchemyError) -> ReviewError:
    return ReviewError(f"cannot read the record store {redacted(url)} ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''})")


def _streamed(url: str, crops) -> Iterator[tuple[str, bytes]]:
    """(record id, bytes) of each row of ``crops``, ``CROP_CHUNK`` rows fetched at a time (a server-side cursor
    on PostgreSQL), on a connection of its own that closes when the iteration ends or is abandoned."""
    try:
        engine = connect(url)
        try:
            with engine.connect() as connection:
                for row in connection.execution_options(yield_per=CROP_CHUNK).execute(crops):
                    yield row.record_id, bytes(row.data)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise _unreadable(url, exc) from None
