"""The record of every analysis, kept by each worker in the record store (handler/store.py).

Each answered request — image or video, errors included — becomes one row of ``records``: who asked, the
bytes' sha256 and perceptual hash (never the bytes), the model and what computed it, the verdict with the
calibrated P(fake) and the deciding subject's raw logits, the thresholds, the provenance summary, status
and error. People add ``labels`` rows (append-only; the latest counts), and each worker keeps the
labelled hashes in memory (handler/fingerprint.py) so a re-upload of judged content is answered with a
``match`` beside the model's verdict. Workers only read and insert.

A store that cannot be reached never fails an analysis: the request's receipt says it was not kept, and
the store is not tried again for ``RETRY_AFTER_S``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from typing import Any, Sequence

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from handler.analysis import Analysis, Match, Receipt
from handler.answers import decision_block, face_search_block, match_block
from handler.decision import Decision
from handler.fingerprint import MIN_QUALITY, HashIndex, Labelled
from handler.kept_media import CropShape, media_rows
from handler.store import MATCHED_LABELS, RecordSettings, connect, iso_utc, labels, latest_labels, now, purge_older_than, record_media, records

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 10.0
FULL_RELOAD_EVERY = 20  # refreshes between full reloads of the labelled hashes (deleted records drop out)
PURGE_EVERY_S = 3600.0  # each worker's background thread also deletes records past retention this often


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

    def __init__(self, settings: RecordSettings, model: dict[str, Any], engine: Engine | None = None, shape: CropShape = CropShape()) -> None:
        self.settings = settings
        self.model = model
        self.shape = shape  # how the model's processor sizes a crop: the kept crops are what it received
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
                        gone = self._purge()
                        logger.info("purged %d records older than %d days", gone, self.settings.retention_days)
                except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                    logger.exception("labelled hashes: refresh or purge failed; trying again in %.0f s", self.settings.refresh_s)
                time.sleep(self.settings.refresh_s)

        self._refresher = threading.Thread(target=loop, name="labelled-hashes", daemon=True)
        self._refresher.start()

    def _purge(self) -> int:
        """Delete the records past retention, off the request path: on an engine of its own, without the
        request path's short statement limits (handler/store.py:connect)."""
        engine = connect(self.settings.url)
        try:
            return purge_older_than(engine, self.settings.retention_days)
        finally:
            engine.dispose()

    def match(self, fingerprint) -> Match | None:
        """The labelled record ``fingerprint`` matches, or None."""
        if fingerprint is None or fingerprint.quality < MIN_QUALITY:
            return None
        found = self.index.nearest(fingerprint.hash, self.settings.match_distance)
        if found is None:
            return None
        entry, bits = found
        current = self._confirm(entry)
        if current is None:
            return None
        return Match(current.record, current.label, bits, current.labelled_at, self.settings.match_distance)

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

    def keep_analyses(self, analyses: Sequence[Analysis], decision: Decision) -> list[Receipt]:
        """Keep one record per analysis (one transaction), then what ``keep_media`` keeps of their media (a
        second one): a picture that cannot be made or stored costs its record's media, never the records."""
        rows = [record_row(analysis, self.model, decision) for analysis in analyses]
        receipts = self.keep(rows)
        if self.settings.keeps_media and receipts and receipts[0].kept:
            self.keep_media([kept for analysis, row in zip(analyses, rows) for kept in self._media(analysis, row["id"], decision)])
        return receipts

    def _media(self, analysis: Analysis, record_id: str, decision: Decision) -> list[dict]:
        try:
            return media_rows(analysis, record_id, self.settings.keep_media, self.shape, decision.fake_label)
        except Exception:  # noqa: BLE001 - an odd picture costs its own media, not its batch-mates'
            logger.exception("no media kept for record %s", record_id)
            return []

    def keep(self, rows: list[dict]) -> list[Receipt]:
        """Insert ``rows`` (one per answer, ids already set) in one transaction; returns each one's receipt:
        its id when kept, else why not."""
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
        return [Receipt(row["id"], True) if kept else Receipt(None, False, reason) for row in rows]

    def keep_media(self, rows: Sequence[dict]) -> bool:
        """Insert ``record_media`` rows of records already kept, in one transaction; False (logged) when the
        store refused them."""
        if not rows:
            return True
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(record_media), list(rows))
            return True
        except SQLAlchemyError as exc:
            logger.warning("media not kept for a batch of %d files: %s", len(rows), exc.__class__.__name__)
            return False

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


def labelled_hashes(engine: Engine) -> list[Labelled]:
    """Every record whose latest label is real or fake and whose image hash is good enough to match."""
    latest = latest_labels()
    query = (select(records.c.id, records.c.pdq, latest.c.label, latest.c.labelled_at)
             .join(latest, latest.c.record_id == records.c.id)
             .where(records.c.pdq.is_not(None), records.c.pdq_quality >= MIN_QUALITY, latest.c.label.in_(MATCHED_LABELS)))
    with engine.connect() as connection:
        return [Labelled(row.id, row.label, iso_utc(row.labelled_at), bytes.fromhex(row.pdq)) for row in connection.execute(query)]


def finite(values) -> list[float | None]:
    """Floats as JSON allows them (NaN and infinities become None: PostgreSQL's json refuses them)."""
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def new_id() -> str:
    return uuid.uuid4().hex


def record_row(analysis: Analysis, model: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """The ``records`` row of one analysis: ids and times set here, the bytes never kept; the JSON columns
    hold the blocks the answer carries (handler/answers.py)."""
    request, subjects, outcome = analysis.request, analysis.subjects, analysis.outcome
    payload = request.payload if isinstance(request.payload, (bytes, bytearray)) else None
    row: dict[str, Any] = {
        "id": new_id(), "created_at": now(), "client": (request.client or "")[:200] or None, "route": request.route,
        "sha256": hashlib.sha256(payload).hexdigest() if payload is not None else None,
        "size_bytes": len(payload) if payload is not None else None,
        "media": subjects.media if subjects is not None else None, "model": model.get("name"), "version": model.get("version"),
        "weights_sha256": model.get("weights_sha256"), "demo": model.get("demo"),
        "pdq": None, "pdq_quality": None, "frame_hashes": None, "runtime": None, "precision": None, "verdict": None,
        "p_fake": None, "labels": None, "logits": None, "decision": None, "subjects": None, "face_search": None, "provenance": None,
        "declared_ai": None, "match": None, "status": analysis.status, "error": analysis.error.error[:200] if analysis.error else None,
    }
    if subjects is not None and subjects.fingerprint is not None:
        row.update(pdq=subjects.fingerprint.hex, pdq_quality=subjects.fingerprint.quality)
    if subjects is not None and subjects.fingerprints:
        row["frame_hashes"] = [print_.hex for print_ in subjects.fingerprints]
    if analysis.error is not None or outcome is None:
        return row
    probabilities = outcome.verdict.probabilities
    summary = provenance_summary(analysis.provenance)
    row.update(runtime=analysis.computed_by[0], precision=analysis.computed_by[1], verdict=outcome.final,
               p_fake=finite([probabilities.get(decision.fake_label)])[0], labels=list(probabilities),
               logits=finite(outcome.verdict.logits) or None, decision=decision_block(decision, subjects.mode),
               subjects=len(outcome.people) or subjects.faces, face_search=face_search_block(subjects.face_search),
               provenance=summary, declared_ai=(summary or {}).get("declared_ai"),
               match=match_block(analysis.match) if analysis.match else None)
    return row
