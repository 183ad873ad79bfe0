"""What people do with the records: list and read them, label them (append-only; the latest label
counts), delete by id or sha256, and take labelled ones as a calibration set (purging by age is
handler/store.py:purge_older_than, which the workers run too). Probes (route ``probe``) are kept like any
record and read by id, but neither listed nor calibrated on."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, case, func, insert, select

from handler.store import LABELS, PROBE, delete_where, iso_utc, labels, latest_labels, now, record_media, records

LIST_LIMIT = 200
# Probes (the page's health probe, rollout's smoke tests: route ``probe``) stay in the store, out of review.
REVIEWED = records.c.route.is_distinct_from(PROBE)
LIST_COLUMNS = ("id", "created_at", "client", "route", "sha256", "size_bytes", "media", "model", "version", "demo", "verdict",
                "p_fake", "subjects", "declared_ai", "match", "status", "error")


class ReviewError(Exception):
    """A review request that cannot be done; the message says why. ``status`` and ``error`` are what the
    review API answers (page/server.py)."""

    status, error = 400, "bad request"


class NoSuchRecord(ReviewError):
    status, error = 404, "no such record"


class NoSuchMedia(ReviewError):
    status, error = 404, "no such media"


class BadLabel(ReviewError):
    error = "bad label"


class BadFilter(ReviewError):
    error = "bad filter"


@dataclass(frozen=True)
class Filters:
    """``verdict``: real | fake | uncertain; ``declared_ai``: True/False; ``labelled``: True/False;
    ``since``/``until``: ISO times; ``limit``/``offset``: paging; ``model``/``version``: the model's name and
    version, exactly; ``client``: exactly, or every client it begins when it ends in ``:`` (``page:`` the page's
    users, ``key:`` callers by key). Uncertain first, then newest."""

    verdict: str | None = None
    declared_ai: bool | None = None
    labelled: bool | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    limit: int = 50
    offset: int = 0
    model: str | None = None
    version: str | None = None
    client: str | None = None


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def _row(mapping) -> dict[str, Any]:
    found = dict(mapping)
    for key in ("created_at", "labelled_at"):
        if key in found:
            found[key] = _iso(found[key])
    return found


def _conditions(filters: Filters, latest) -> list:
    conditions = [REVIEWED]
    for name in ("verdict", "model", "version"):
        if getattr(filters, name) is not None:
            conditions.append(records.c[name] == getattr(filters, name))
    if filters.client is not None:
        client = records.c.client
        conditions.append(client.startswith(filters.client, autoescape=True) if filters.client.endswith(":") else client == filters.client)
    if filters.declared_ai is not None:
        conditions.append(records.c.declared_ai.is_(filters.declared_ai))
    if filters.labelled is not None:
        conditions.append(latest.c.label.is_not(None) if filters.labelled else latest.c.label.is_(None))
    if filters.since is not None:
        conditions.append(records.c.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(records.c.created_at < filters.until)
    return conditions


def list_records(engine: Engine, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Records with their latest label and the position of their kept thumbnail (None: none kept),
    ``uncertain`` first, newest first within; probes left out. ``count_records`` counts them all."""
    latest = latest_labels()
    thumbnail = (select(func.min(record_media.c.position)).where(record_media.c.record_id == records.c.id, record_media.c.kind == "thumbnail")
                 .scalar_subquery().label("thumbnail"))
    query = (select(*(records.c[name] for name in LIST_COLUMNS), latest.c.label, latest.c.reviewer, latest.c.labelled_at, thumbnail)
             .outerjoin(latest, latest.c.record_id == records.c.id)
             .where(*_conditions(filters, latest))
             .order_by(case((records.c.verdict == "uncertain", 0), else_=1), records.c.created_at.desc(), records.c.id)
             .limit(max(1, min(filters.limit, LIST_LIMIT))).offset(max(0, filters.offset)))
    with engine.connect() as connection:
        return [_row(row._mapping) for row in connection.execute(query)]


def count_records(engine: Engine, filters: Filters = Filters()) -> int:
    """How many records ``list_records`` would list with these filters over all pages."""
    latest = latest_labels()
    query = select(func.count()).select_from(records.outerjoin(latest, latest.c.record_id == records.c.id)).where(*_conditions(filters, latest))
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


MEDIA_COLUMNS = ("position", "kind", "subject", "time", "box", "verdict", "p_fake", "width", "height", "content_type")


def get_record(engine: Engine, record_id: str) -> dict[str, Any]:
    """One record, every field, with its labels oldest first and what it kept of its media (``kept_media``: each
    file's fields without its bytes, which ``media_file`` reads); ``NoSuchRecord`` when there is none."""
    with engine.connect() as connection:
        found = connection.execute(select(records).where(records.c.id == record_id)).first()
        if found is None:
            raise NoSuchRecord(f"no record {record_id!r}")
        history = connection.execute(select(labels.c.label, labels.c.note, labels.c.reviewer, labels.c.created_at)
                                     .where(labels.c.record_id == record_id).order_by(labels.c.id)).all()
        media = connection.execute(select(*(record_media.c[name] for name in MEDIA_COLUMNS))
                                   .where(record_media.c.record_id == record_id).order_by(record_media.c.position)).all()
    record = _row(found._mapping)
    record["kept_media"] = [dict(m._mapping) for m in media]
    record["labels_history"] = [_row(h._mapping) for h in history]
    record["label"] = history[-1].label if history else None
    return record


MAX_MEDIA_POSITION = 10_000  # far above what a record keeps; beyond it a position is refused before the store sees it


def media_file(engine: Engine, record_id: str, position: int) -> tuple[bytes, str]:
    """The bytes and content type of a record's kept file at ``position``; ``NoSuchMedia`` when there is none
    (a position outside 0..``MAX_MEDIA_POSITION`` never reaches the store: SQLite overflows on a huge one)."""
    if not 0 <= position <= MAX_MEDIA_POSITION:
        raise NoSuchMedia(f"positions run from 0 to {MAX_MEDIA_POSITION}; got {position}")
    with engine.connect() as connection:
        found = connection.execute(select(record_media.c.data, record_media.c.content_type)
                                   .where(record_media.c.record_id == record_id, record_media.c.position == position)).first()
    if found is None:
        raise NoSuchMedia(f"record {record_id!r} kept no file at position {position}")
    return bytes(found.data), found.content_type


def add_label(engine: Engine, record_id: str, label: str, note: str | None, reviewer: str) -> dict[str, Any]:
    """Append a label event to a record; returns it. ``NoSuchRecord`` or ``BadLabel``."""
    if label not in LABELS:
        raise BadLabel(f"label must be one of {', '.join(LABELS)}; got {str(label)[:40]!r}")
    if note is not None and not isinstance(note, str):
        raise BadLabel("note must be a string")
    event = {"record_id": record_id, "label": label, "note": (note or "")[:2000] or None, "reviewer": reviewer[:200], "created_at": now()}
    with engine.begin() as connection:
        if connection.execute(select(records.c.id).where(records.c.id == record_id)).first() is None:
            raise NoSuchRecord(f"no record {record_id!r}")
        connection.execute(insert(labels), [event])
    return _row(event)


def delete_records(engine: Engine, ids: list[str] = (), sha256: list[str] = ()) -> int:
    """Delete the records with these ids or byte hashes (and their labels); returns how many went."""
    if not ids and not sha256:
        return 0
    return delete_where(engine, records.c.id.in_(list(ids)) | records.c.sha256.in_([s.lower() for s in sha256]))


JUDGED = ("real", "fake")  # the labels that are a truth to compare with; "unsure" is none
BUCKETS = ("day", "week")


def _judged(since: datetime.datetime | None = None):
    """(model, version, created_at, verdict, label) of the answered records, probes left out, whose latest
    label is real or fake, made at ``since`` or later when given: a query."""
    latest = latest_labels()
    query = (select(records.c.model, records.c.version, records.c.created_at, records.c.verdict, latest.c.label)
             .join(latest, latest.c.record_id == records.c.id)
             .where(REVIEWED, latest.c.label.in_(JUDGED), records.c.verdict.in_((*JUDGED, "uncertain"))))
    return query if since is None else query.where(records.c.created_at >= since)


def _tally(rows) -> dict[str, int]:
    return {"reviewed": len(rows),
            "labelled_real": sum(r.label == "real" for r in rows),
            "labelled_fake": sum(r.label == "fake" for r in rows),
            "agreed": sum(r.verdict == r.label for r in rows),
            "false_positives": sum(r.label == "real" and r.verdict == "fake" for r in rows),
            "missed_fakes": sum(r.label == "fake" and r.verdict == "real" for r in rows),
            "uncertain": sum(r.verdict == "uncertain" for r in rows)}


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)


def _how_many(condition):
    """SUM(CASE WHEN condition THEN 1 ELSE 0 END), 0 over no rows: a count SQLite and PostgreSQL both take."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _agreement(connection) -> dict[str, Any]:
    """The agreement of ``queue_counts``, summed by the store (no record comes into Python)."""
    judged = _judged().subquery()
    found = connection.execute(select(_how_many(judged.c.verdict != "uncertain"), _how_many(judged.c.verdict == judged.c.label),
                                      _how_many(judged.c.verdict == "uncertain"))).one()
    compared, agreed, uncertain = (int(value) for value in found)
    return {"compared": compared, "agreed": agreed, "share": agreed / compared if compared else None, "uncertain": uncertain}


def queue_counts(engine: Engine, now: datetime.datetime, day_start: datetime.datetime | None = None) -> dict[str, Any]:
    """The review queue at ``now``, probes left out: ``to_review`` (records without a label), ``labelled_today``
    (records labelled from ``day_start`` on, for a day; None: the UTC day of ``now``, the page passes its
    reviewer's local midnight) and ``agreement``: of records labelled real or fake, ``compared`` (those the model
    answered real or fake), ``agreed`` (label equals verdict), ``share`` (agreed / compared, None with none) and
    ``uncertain`` (those the model answered uncertain, counted apart). Counted by the store, cheap enough to ask
    after every label. ``BadFilter`` when the day would end past the calendar's last day."""
    start = _utc(day_start) if day_start is not None else _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        end = start + datetime.timedelta(days=1)
    except OverflowError:
        raise BadFilter(f"day_start must leave a whole day before {datetime.datetime.max.date()}; got {iso_utc(start)}") from None
    today = (select(func.count(func.distinct(labels.c.record_id))).select_from(labels.join(records, records.c.id == labels.c.record_id))
             .where(REVIEWED, labels.c.created_at >= start, labels.c.created_at < end))
    with engine.connect() as connection:
        labelled_today = connection.execute(today).scalar_one()
        agreement = _agreement(connection)
    return {"to_review": count_records(engine, Filters(labelled=False)), "labelled_today": labelled_today, "day_start": iso_utc(start),
            "agreement": agreement}


def agreement_over_time(engine: Engine, bucket: str = "day", since: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """How the model's verdicts agree with the reviewers, per model name, version and ``bucket`` (``day`` or
    ``week``, from Monday; UTC) of the records' times, probes left out, oldest first; only records made at
    ``since`` or later when given (None: all; the page asks for a window). Each row: ``model``,
    ``version``, ``day`` (the bucket's first day, ISO date), ``reviewed`` (records whose latest label is real or
    fake; ``labelled_real`` and ``labelled_fake`` of them), ``agreed`` (verdict equals label),
    ``false_positives`` (labelled real, answered fake), ``missed_fakes`` (labelled fake, answered real),
    ``uncertain`` (answered uncertain); agreed + false_positives + missed_fakes + uncertain = reviewed. ``ValueError`` for another bucket."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}; got {bucket!r}")
    groups: dict[tuple, list] = {}
    with engine.connect() as connection:
        judged = connection.execute(_judged(since)).all()
    for row in judged:
        day = _utc(row.created_at).date()
        first = day - datetime.timedelta(days=day.weekday() if bucket == "week" else 0)
        groups.setdefault((row.model or "", row.version or "", first), []).append(row)
    return [{"model": model, "version": version, "day": first.isoformat(), **_tally(rows)}
            for (model, version, first), rows in sorted(groups.items(), key=lambda item: (item[0][2], item[0][0], item[0][1]))]


@dataclass(frozen=True)
class LabelledSet:
    """Labelled image records as a calibration set: the stored raw logits of each deciding crop, the
    reviewer's label as truth, the model's verdict and the record ids; ``face_mode``: the face mode whose
    kind of subject they all are (None: not sorted by it)."""

    labels: tuple[str, ...]
    fake_index: int
    logits: np.ndarray
    truth: np.ndarray
    verdicts: list[str]
    ids: list[str]
    skipped: dict[str, int]
    face_mode: str | None = None


def classified_as(face_mode: str | None, faces: int | None, searched: bool) -> bool:
    """Whether a record's deciding subject is what ``face_mode`` classifies in that image. A record does not
    keep the face mode its request asked for, but what was classified: ``faces`` (its ``subjects``: face
    crops, 0 for the whole image) and ``searched`` (its ``face_search`` is set, since migration 0002, when a
    face search ran). faces: a face crop; off: the whole image; auto: a face crop, or the whole image after a
    search found no face (a whole image classified without a search may have held one). None: any."""
    if face_mode is None:
        return True
    if face_mode == "auto":
        return bool(faces) or searched
    return bool(faces) == (face_mode == "faces")


def labelled_set(engine: Engine, fake_label: str, model: str | None = None, version: str | None = None,
                 weights: str | None = None, face_mode: str | None = None) -> LabelledSet:
    """Image records, probes left out, whose latest label is real or fake (``unsure`` is no truth) and that
    kept logits, of one model name, version and weights (their SHA-256) when given, and whose deciding
    subject is what ``face_mode`` classifies (``classified_as``) when given; ``ReviewError`` when they
    disagree on the label set."""
    latest = latest_labels()
    query = (select(records.c.id, records.c.labels, records.c.logits, records.c.verdict, records.c.subjects, records.c.face_search,
                    latest.c.label)
             .join(latest, latest.c.record_id == records.c.id)
             .where(REVIEWED, records.c.media == "image", latest.c.label.in_(("real", "fake"))).order_by(records.c.created_at))
    if model is not None:
        query = query.where(records.c.model == model)
    if version is not None:
        query = query.where(records.c.version == version)
    if weights is not None:
        query = query.where(records.c.weights_sha256 == weights)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    with_logits = [r for r in rows if r.logits and r.labels]
    usable = [r for r in with_logits if classified_as(face_mode, r.subjects, r.face_search is not None)]
    skipped = {"without_logits": len(rows) - len(with_logits), "other_subject": len(with_logits) - len(usable)}
    if not usable:
        return LabelledSet((), -1, np.zeros((0, 0)), np.zeros(0, int), [], [], skipped, face_mode)
    label_set = tuple(usable[0].labels)
    if any(tuple(r.labels) != label_set for r in usable):
        raise ReviewError("the labelled records come from models with different labels; pick one with --model")
    if fake_label not in label_set:
        raise ReviewError(f"fake label {fake_label!r} is not one of the records' labels {list(label_set)}")
    real = [name for name in label_set if name != fake_label]
    if len(real) != 1:
        raise ReviewError(f"calibration from reviews needs a two-label model; the records have {list(label_set)}")
    index = {"fake": label_set.index(fake_label), "real": label_set.index(real[0])}
    return LabelledSet(label_set, index["fake"], np.asarray([r.logits for r in usable], dtype=float), np.asarray([index[r.label] for r in usable]),
                       [r.verdict for r in usable], [r.id for r in usable], skipped, face_mode)
