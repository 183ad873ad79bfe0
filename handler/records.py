"""The record of every analysis, kept in a database (SQLAlchemy 2: SQLite by default, PostgreSQL by URL).

Each answered request — image or video, 4xx included — becomes one row of ``records``: who asked, the
bytes' sha256 and perceptual hash (never the bytes), the model and what computed it, the verdict with the
calibrated P(fake) and the deciding subject's raw logits, the thresholds, the provenance summary, status
and error. People add ``labels`` rows (append-only; the latest counts), and each worker keeps the
labelled hashes in memory (handler/fingerprint.py) so a re-upload of judged content is answered with a
``match`` beside the model's verdict. The schema is created and migrated by Alembic
(deepfake_service/records/migrations); workers only read and insert.

A store that cannot be reached never fails an analysis: the answer's ``record`` says it was not kept,
and the store is not tried again for ``RETRY_AFTER_S``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from handler.errors import ClientError
from handler.fingerprint import MATCH_DISTANCE, MIN_QUALITY, HashIndex, Labelled

logger = logging.getLogger(__name__)

SETTINGS_ENV = "DEEPFAKE_RECORDS"  # JSON of RecordSettings, set by whoever starts TorchServe
CLIENT_HEADER = "X-Deepfake-Client"  # who the upload page says asked (recorded as claimed)
LABELS = ("real", "fake", "unsure")
MATCHED_LABELS = ("real", "fake")  # "unsure" is no judgement to repeat
RETRY_AFTER_S = 10.0
FULL_RELOAD_EVERY = 20  # refreshes between full reloads of the labelled hashes (deleted records drop out)
PURGE_EVERY_S = 3600.0  # each worker's background thread also deletes records past retention this often

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


@dataclass(frozen=True)
class RecordSettings:
    """``url``: the SQLAlchemy URL ("" or "off": records off); ``match_distance``: the most PDQ bits
    between a new image and a labelled one that still match; ``refresh_s``: how old a worker's copy of
    the labelled hashes may get; ``retention_days``: records older than this are purged (0: kept)."""

    url: str = ""
    match_distance: int = MATCH_DISTANCE
    refresh_s: float = 30.0
    retention_days: int = 365

    @property
    def enabled(self) -> bool:
        return self.url not in ("", "off")

    def to_environment(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> "RecordSettings":
        """The settings the starter put in ``DEEPFAKE_RECORDS``; none there: records off."""
        raw = (environ if environ is not None else os.environ).get(SETTINGS_ENV)
        return cls(**json.loads(raw)) if raw else cls()


def connect(url: str, request_path: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout (several workers write) and foreign keys.
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
            for pragma in ("journal_mode=WAL", f"busy_timeout={busy}", "synchronous=NORMAL", "foreign_keys=ON"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()
    return engine


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def weights_sha256(files: Sequence) -> str:
    """SHA-256 over the checkpoint's weight files, in name order: which weights answered."""
    digest = hashlib.sha256()
    for path in sorted(files):
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def provenance_summary(provenance: dict | None) -> dict | None:
    """What a reviewer needs of the provenance block: declared AI and by what, the C2PA state, signer and
    validation, and the statement."""
    if not provenance:
        return None
    c2pa = provenance.get("c2pa") or {}
    return {"declared_ai": provenance.get("declared_ai"), "declared_by": provenance.get("declared_by"),
            "c2pa": c2pa.get("state") if c2pa.get("present") else None, "signer": (c2pa.get("signer") or {}).get("common_name"),
            "validation_state": c2pa.get("validation_state"), "statement": provenance.get("statement")}


class Recorder:
    """Writes one record per answer (one transaction per batch) and matches images against labelled
    hashes. ``model``: name, version, weights_sha256 of the answering model."""

    def __init__(self, settings: RecordSettings, model: dict[str, Any], engine: Engine | None = None) -> None:
        self.settings = settings
        self.model = model
        self.engine = engine or connect(settings.url, request_path=True)
        self.index = HashIndex()
        self._labelled: dict[str, Labelled] = {}
        self._last_label: int | None = None  # the newest label event applied; None: load everything
        self._refreshes = 0
        self._refresher: threading.Thread | None = None
        self._down_until = float("-inf")
        self._down_reason = ""

    def refresh(self, force: bool = False) -> None:
        """Bring the labelled hashes up to date: the label events since the last refresh (a full reload
        on the first call, with ``force``, and every ``FULL_RELOAD_EVERY`` refreshes, which also drops
        deleted and purged records); the index is swapped in whole."""
        full = force or self._last_label is None or self._refreshes % FULL_RELOAD_EVERY == 0
        self._refreshes += 1
        if full:
            newest = newest_label(self.engine)
            labelled = {entry.record: entry for entry in labelled_hashes(self.engine)}
        else:
            labelled, newest = dict(self._labelled), self._last_label
            for event in label_events(self.engine, self._last_label):
                newest = event.id
                if event.label in MATCHED_LABELS and event.pdq and (event.pdq_quality or 0) >= MIN_QUALITY:
                    labelled[event.record_id] = Labelled(event.record_id, event.label, iso_utc(event.created_at), bytes.fromhex(event.pdq))
                else:
                    labelled.pop(event.record_id, None)
            if newest == self._last_label:
                return
        self._labelled, self._last_label = labelled, newest
        self.index = HashIndex(list(labelled.values()))

    def start_refreshing(self) -> None:
        """Refresh every ``refresh_s`` on a daemon thread, off the request path (once per recorder)."""
        if self._refresher is not None:
            return

        def loop() -> None:
            purged_at = time.monotonic()
            while True:
                try:
                    self._refresh_logged()
                    if self.settings.retention_days > 0 and time.monotonic() - purged_at >= PURGE_EVERY_S:
                        purged_at = time.monotonic()
                        gone = purge_older_than(self.engine, self.settings.retention_days)
                        logger.info("purged %d records older than %d days", gone, self.settings.retention_days)
                except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                    logger.exception("labelled hashes: refresh or purge failed; trying again in %.0f s", self.settings.refresh_s)
                time.sleep(self.settings.refresh_s)

        self._refresher = threading.Thread(target=loop, name="labelled-hashes", daemon=True)
        self._refresher.start()

    def match(self, fingerprint) -> dict | None:
        """The ``match`` block for an image's fingerprint, or None."""
        if fingerprint is None or fingerprint.quality < MIN_QUALITY:
            return None
        found = self.index.nearest(fingerprint.hash, self.settings.match_distance)
        if found is None:
            return None
        entry, bits = found
        current = self._confirm(entry)
        if current is None:
            return None
        return {"record": current.record, "label": current.label, "distance": bits, "labelled_at": current.labelled_at,
                "max_distance": self.settings.match_distance}

    def _confirm(self, entry: Labelled) -> Labelled | None:
        """The matched record's latest label, read from the store: a record deleted or relabelled since the
        last refresh does not answer with its old label (one indexed read, only when something matched).
        A store that cannot say keeps the in-memory entry."""
        try:
            with self.engine.connect() as connection:
                latest = connection.execute(select(labels.c.label, labels.c.created_at).where(labels.c.record_id == entry.record)
                                            .order_by(labels.c.id.desc()).limit(1)).first()
        except SQLAlchemyError:
            return entry
        if latest is None or latest.label not in MATCHED_LABELS:
            return None
        return Labelled(entry.record, latest.label, iso_utc(latest.created_at), entry.hash)

    def keep(self, rows: list[dict]) -> list[dict]:
        """Insert ``rows`` (one per answer, ids already set) in one transaction; returns each answer's
        ``record`` block: its id when kept, else ``kept: false`` and why."""
        if not rows:
            return []
        now_s = time.monotonic()
        kept, reason = False, self._down_reason
        if now_s >= self._down_until:
            try:
                with self.engine.begin() as connection:
                    connection.execute(insert(records), rows)
                kept = True
            except SQLAlchemyError as exc:
                reason = self._mark_down(exc)
                logger.warning("records not kept for a batch of %d: %s", len(rows), exc.__class__.__name__)
        return [{"id": row["id"], "kept": True} if kept else {"id": None, "kept": False, "detail": reason} for row in rows]

    def try_refresh(self) -> None:
        """For the request path. With ``refresh_s`` > 0: the first call loads the labelled hashes before
        answering and starts the background refresh, later calls return at once. With 0 (tests): refresh
        here, every call."""
        if self.settings.refresh_s > 0 and self._refresher is not None:
            return
        self._refresh_logged()
        if self.settings.refresh_s > 0 and self._last_label is not None:
            self.start_refreshing()

    def _refresh_logged(self) -> None:
        """``refresh`` that logs instead of raising: the store may be down, and matching then uses the copy
        it has; a failure is not retried for ``RETRY_AFTER_S``."""
        if time.monotonic() < self._down_until:
            return
        try:
            self.refresh()
        except SQLAlchemyError as exc:
            self._mark_down(exc)
            logger.warning("labelled hashes not refreshed: %s", exc.__class__.__name__)

    def _mark_down(self, exc: SQLAlchemyError) -> str:
        """Leave the store alone for ``RETRY_AFTER_S`` after ``exc``; returns the reason answers give."""
        self._down_until, self._down_reason = time.monotonic() + RETRY_AFTER_S, f"record store unavailable ({type(exc).__name__})"
        return self._down_reason


def newest_label(engine: Engine) -> int:
    """The id of the newest label event (0 when there is none)."""
    with engine.connect() as connection:
        return connection.execute(select(func.coalesce(func.max(labels.c.id), 0))).scalar_one()


def label_events(engine: Engine, after: int) -> list:
    """Label events newer than ``after``, oldest first, with their record's hash and its quality."""
    query = (select(labels.c.id, labels.c.record_id, labels.c.label, labels.c.created_at, records.c.pdq, records.c.pdq_quality)
             .join(records, records.c.id == labels.c.record_id).where(labels.c.id > after).order_by(labels.c.id))
    with engine.connect() as connection:
        return connection.execute(query).all()


def latest_labels():
    """The latest label event of each labelled record (the one that counts), as a subquery: record_id,
    label, note, reviewer, labelled_at."""
    last = select(labels.c.record_id, func.max(labels.c.id).label("last")).group_by(labels.c.record_id).subquery()
    return (select(labels.c.record_id, labels.c.label, labels.c.note, labels.c.reviewer, labels.c.created_at.label("labelled_at"))
            .join(last, labels.c.id == last.c.last).subquery())


def labelled_hashes(engine: Engine) -> list[Labelled]:
    """Every record whose latest label is real or fake and whose image hash is good enough to match."""
    latest = latest_labels()
    query = (select(records.c.id, records.c.pdq, latest.c.label, latest.c.labelled_at)
             .join(latest, latest.c.record_id == records.c.id)
             .where(records.c.pdq.is_not(None), records.c.pdq_quality >= MIN_QUALITY, latest.c.label.in_(MATCHED_LABELS)))
    with engine.connect() as connection:
        return [Labelled(row.id, row.label, iso_utc(row.labelled_at), bytes.fromhex(row.pdq)) for row in connection.execute(query)]


def iso_utc(moment: datetime.datetime) -> str:
    """A stored time as ISO 8601 in UTC (SQLite hands back naive UTC, PostgreSQL the server's zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


def purge_older_than(engine: Engine, days: int) -> int:
    """Delete records older than ``days`` and their labels; returns how many records went (0 days: none)."""
    if days <= 0:
        return 0
    return delete_where(engine, records.c.created_at < now() - datetime.timedelta(days=days))


def delete_where(engine: Engine, condition) -> int:
    """Delete the records meeting ``condition`` and their labels, in one transaction; returns how many
    records went."""
    with engine.begin() as connection:
        connection.execute(delete(labels).where(labels.c.record_id.in_(select(records.c.id).where(condition))))
        return connection.execute(delete(records).where(condition)).rowcount


def finite(values) -> list[float | None]:
    """Floats as JSON allows them (NaN and infinities become None: PostgreSQL's json refuses them)."""
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def new_id() -> str:
    return uuid.uuid4().hex


def record_row(analysis, reply, model: dict[str, Any], fake_label: str) -> dict[str, Any]:
    """The ``records`` row of one analysis (handler/analysis.py) and its answer (a dict or the
    ``ClientError``): ids and times set here, the bytes never kept."""
    request, subjects = analysis.request, analysis.subjects
    payload = request.payload if isinstance(request.payload, (bytes, bytearray)) else None
    row: dict[str, Any] = {
        "id": new_id(), "created_at": now(), "client": (request.client or "")[:200] or None, "route": request.route,
        "sha256": hashlib.sha256(payload).hexdigest() if payload is not None else None,
        "size_bytes": len(payload) if payload is not None else None,
        "media": getattr(subjects, "media", None), "model": model.get("name"), "version": model.get("version"),
        "weights_sha256": model.get("weights_sha256"), "demo": model.get("demo"),
        "pdq": None, "pdq_quality": None, "frame_hashes": None, "runtime": None, "precision": None, "verdict": None,
        "p_fake": None, "labels": None, "logits": None, "decision": None, "subjects": None, "face_search": None, "provenance": None,
        "declared_ai": None, "match": None, "status": 200, "error": None,
    }
    if getattr(subjects, "fingerprint", None) is not None:
        row.update(pdq=subjects.fingerprint.hex, pdq_quality=subjects.fingerprint.quality)
    if getattr(subjects, "fingerprints", None):
        row["frame_hashes"] = [print_.hex for print_ in subjects.fingerprints]
    if isinstance(reply, ClientError):
        row.update(status=reply.status, error=reply.error[:200])
        return row
    probabilities = reply["probabilities"]
    deciding = reply.get("decided_by_face") or 0
    logits = analysis.verdicts[deciding].logits if reply.get("media") == "image" and analysis.verdicts else ()
    summary = provenance_summary(reply.get("provenance"))
    p_fake = probabilities.get(fake_label)
    row.update(runtime=reply.get("runtime"), precision=reply.get("precision"), verdict=reply.get("verdict"),
               p_fake=finite([p_fake])[0], labels=list(probabilities), logits=finite(logits) or None,
               decision=reply.get("decision"), subjects=len(reply.get("faces") or reply.get("people") or ()),
               face_search=reply.get("face_search"),
               provenance=summary, declared_ai=(summary or {}).get("declared_ai"), match=reply.get("match"))
    return row
