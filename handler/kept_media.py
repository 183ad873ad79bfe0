"""What a record keeps of the media it judged (the record store's ``keep_media``, docs/records.md): the crops
as the model received them (the checkpoint processor's size and resampling), each with its own verdict, P(fake)
and box, and with ``crops+thumbnail`` a small thumbnail of the whole picture (a clip: a sampled frame), as
JPEG files in ``record_media`` rows (handler/store.py) written with the record and deleted with it. Only
reviewers read them (page/server.py). A video keeps each person's deciding frames, not every frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from handler.analysis import Analysis
from handler.faces import shrunk
from handler.fingerprint import PREVIEW_SIDE
from handler.store import PROBE
from handler.verdicts import Verdict

THUMBNAIL_SIDE = PREVIEW_SIDE  # the thumbnail's longer side, in pixels: the subjects' ``picture`` is already that small
JPEG_QUALITY = 90
MOST_CROPS = 12  # a record keeps at most this many crops (the subjects' ``shown`` order)


@dataclass(frozen=True)
class CropShape:
    """The size (width, height) and PIL resampling filter with which the model's processor resizes a crop."""

    size: tuple[int, int] = (224, 224)
    resample: int = Image.Resampling.BILINEAR

    @classmethod
    def of(cls, processor) -> "CropShape":
        """The shape ``processor`` (a ViT image processor) gives its inputs."""
        size = dict(getattr(processor, "size", None) or {})
        if "width" in size and "height" in size:
            shape = (int(size["width"]), int(size["height"]))
        else:  # a processor that sizes by the shortest edge: a face crop is square, so that edge squared
            side = int(size.get("shortest_edge", 224))
            shape = (side, side)
        resample = getattr(processor, "resample", None)
        return cls(shape, int(resample) if resample is not None else Image.Resampling.BILINEAR)


def media_rows(analysis: Analysis, record_id: str, keep: str, shape: CropShape, fake_label: str) -> list[dict[str, Any]]:
    """The ``record_media`` rows of one analysis under ``keep`` (none | crops | crops+thumbnail): nothing for
    ``none``, an error, or a probe; else the thumbnail first (when kept), then the crops."""
    if keep == "none" or analysis.error is not None or analysis.outcome is None or analysis.request.route == PROBE:
        return []
    subjects = analysis.subjects
    rows: list[dict[str, Any]] = []
    if keep == "crops+thumbnail" and subjects.picture is not None:
        rows.append(_row(shrunk(subjects.picture, THUMBNAIL_SIDE)[0], kind="thumbnail"))
    scores = [verdict.probabilities.get(fake_label, 0.0) for verdict in analysis.verdicts]  # the order shown
    for index in subjects.shown(analysis.outcome, scores)[:MOST_CROPS]:
        verdict: Verdict = analysis.verdicts[index]
        subject, time, box = subjects.place(index)
        # the processor's size and filter, after an integer box reduction where the crop is 4x larger (a whole photo):
        # a quarter of a level from the exact input on average, a tenth of what JPEG at quality 90 then changes
        crop = subjects.crops[index].convert("RGB").resize(shape.size, shape.resample, reducing_gap=2.0)
        rows.append(_row(crop, kind="crop", subject=subject, time=time, box=None if box is None else box.as_list(),
                         verdict=verdict.verdict, p_fake=verdict.probabilities.get(fake_label)))  # None: no such label
    for position, row in enumerate(rows):
        row.update(record_id=record_id, position=position)
    return rows


def _row(image: Image.Image, **fields) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    row = {"kind": fields.pop("kind"), "subject": None, "time": None, "box": None, "verdict": None, "p_fake": None,
           "width": image.width, "height": image.height, "content_type": "image/jpeg", "data": buffer.getvalue()}
    row.update(fields)
    return row
