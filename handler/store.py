"""The record store's side that workers and tools share: its settings, its tables, an engine for its URL,
and the queries both sides run (the latest label of each record, deletes and purges). What a worker does
with it, keeping records and matching labelled hashes, is handler/recorder.py; the review side is
deepfake_service/records/. The schema is created and migrated by Alembic (deepfake_service/records/migrations).
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
)

from handler.fingerprint import MATCH_DISTANCE

SETTINGS_ENV = "DEEPFAKE_RECORDS"  # JSON of RecordSettings, set by whoever starts TorchServe
# The route of a record a signed probe made (the page's health probe, rollout's smoke tests; handler/clients.py),
# which review lists and calibration leave out.
PROBE = "probe"
LABELS = ("real", "fake", "unsure")
# What a record keeps of the media it judged (docs/records.md, "What is kept of the media"): nothing, the crops as the
# model received them, or those and a small thumbnail of the whole picture.
KEEP_MEDIA = ("none", "crops", "crops+thumbnail")
MATCHED_LABELS = ("real", "fake")  # "unsure" is no judgement to repeat

metadata = MetaData()

records = Table(
    "records", metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("client", String(200)),
    Column("route", String(40)),
    Column("sha256", String(64), index=True),
    Column("size_bytes", Integer),
    Column("media", String(10)),
    Column("pdq", String(64)),
    Column("pdq_quality", Integer),
    Column("frame_hashes", JSON),
    Column("model", String(200)),
    Column("version", String(50)),
    Column("weights_sha256", String(64)),
    Column("demo", Boolean),
    Column("runtime", String(40)),
    Column("precision", String(20)),
    Column("verdict", String(20), index=True),
    Column("p_fake", Float),
    Column("labels", JSON),
    Column("logits", JSON),
    Column("decision", JSON),
    Column("subjects", Integer),
    Column("face_search", JSON),  # the answer's face_search: {"detector", "smallest_face"} (migration 0002)
    Column("provenance", JSON),
    Column("declared_ai", Boolean),
    Column("match", JSON),
    Column("status", Integer, nullable=False),
    Column("error", String(200)),
)

labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", String(32), ForeignKey("records.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("label", String(10), nullable=False),
    Column("note", Text),
    Column("reviewer", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# What a record kept of its media (migration 0003; handler/kept_media.py): JPEG files, at most a few per record,
# deleted with it. ``kind``: thumbnail | crop; ``position``: the order shown; a crop's ``subject`` (its face, or
# person in a video; None: the whole picture), ``time`` (a video frame's, in seconds), ``box`` (x, y, width, height
# as the answer gives it; None: the whole picture) and its own verdict and P(fake).
record_media = Table(
    "record_media", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", String(32), ForeignKey("records.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("kind", String(10), nullable=False),
    Column("subject", Integer),
    Column("time", Float),
    Column("box", JSON),
    Column("verdict", String(20)),
    Column("p_fake", Float),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("content_type", String(40), nullable=False),
    Column("data", LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class RecordSettings:
    """``url``: the SQLAlchemy URL ("" or "off": records off); ``match_distance``: the most PDQ bits
    between a new image and a labelled one that still match; ``refresh_s``: how old a worker's copy of
    the labelled hashes may get; ``retention_days``: records older than this are purged (0: kept);
    ``client_header``: the header a deployment's authenticating proxy sets, naming API callers in the
    record ("": none; handler/clients.py); ``keep_media``: what a record keeps of the media (``KEEP_MEDIA``:
    none, the crops as the model received them, or those and a thumbnail of the whole picture)."""

    url: str = ""
    match_distance: int = MATCH_DISTANCE
    refresh_s: float = 30.0
    retention_days: int = 365
    client_header: str = ""
    keep_media: str = "crops+thumbnail"

    def __post_init__(self) -> None:
        if self.keep_media not in KEEP_MEDIA:
            raise ValueError(f"keep_media must be one of {', '.join(KEEP_MEDIA)}, not {str(self.keep_media)[:40]!r}")

    @property
    def enabled(self) -> bool:
        return self.url not in ("", "off")

    @property
    def keeps_media(self) -> bool:
        """Whether a record keeps any picture (``keep_media`` is not ``none``)."""
        return self.keep_media != "none"

    def to_environment(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> "RecordSettings":
        """The settings the starter put in ``DEEPFAKE_RECORDS``; none there: records off."""
        raw = (environ if environ is not None else os.environ).get(SETTINGS_ENV)
        return cls(**json.loads(raw)) if raw else cls()


def connect(url: str, request_path: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout (several workers write), foreign keys and
    secure deletes.
    ``request_path``: the engine a worker uses while answering, whose waits are short (PostgreSQL: 2 s per
    statement, 1 s for a lock; SQLite: 2 s busy) so that a stuck store costs a batch its records, never
    its answers."""
    arguments = {}
    if url.startswith("postgresql"):
        arguments = {"connect_timeout": 3, **({"options": "-c statement_timeout=2000 -c lock_timeout=1000"} if request_path else {})}
    engine = create_engine(url, pool_pre_ping=True, connect_args=arguments)
    if engine.dialect.name == "sqlite":
        busy = 2000 if request_path else 10000

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            # secure_delete: a deleted record's pictures are overwritten, not left in the file's free pages
            for pragma in ("journal_mode=WAL", f"busy_timeout={busy}", "synchronous=NORMAL", "foreign_keys=ON", "secure_delete=ON"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()
    return engine


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def latest_labels():
    """The latest label event of each labelled record (the one that counts), as a subquery: record_id,
    label, note, reviewer, labelled_at."""
    last = select(labels.c.record_id, func.max(labels.c.id).label("last")).group_by(labels.c.record_id).subquery()
    return (select(labels.c.record_id, labels.c.label, labels.c.note, labels.c.reviewer, labels.c.created_at.label("labelled_at"))
            .join(last, labels.c.id == last.c.last).subquery())


def iso_utc(moment: datetime.datetime) -> str:
    """A stored time as ISO 8601 in UTC (SQLite hands back naive UTC, PostgreSQL the server's zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


PURGE_BATCH = 1000  # records deleted per transaction by a purge


def purge_older_than(engine: Engine, days: int) -> int:
    """Delete records older than ``days`` with their labels and kept media, ``PURGE_BATCH`` records per
    transaction (a backlog never makes one long statement); returns how many records went (0 days: none)."""
    if days <= 0:
        return 0
    cutoff = now() - datetime.timedelta(days=days)
    gone = 0
    while True:
        with engine.connect() as connection:
            batch = list(connection.execute(select(records.c.id).where(records.c.created_at < cutoff).limit(PURGE_BATCH)).scalars())
        if not batch:
            return gone
        gone += delete_where(engine, records.c.id.in_(batch))


def delete_where(engine: Engine, condition) -> int:
    """Delete the records meeting ``condition``, their labels and kept media, in one transaction; returns how
    many records went."""
    with engine.begin() as connection:
        for table in (labels, record_media):
            connection.execute(delete(table).where(table.c.record_id.in_(select(records.c.id).where(condition))))
        return connection.execute(delete(records).where(condition)).rowcount
