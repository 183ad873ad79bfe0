"""Still images as a media kind: safe decoding (handler/images.py), the faces of all a batch's images
found in one go, square crops of each (or the whole image), and the most-fake face deciding."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from PIL import Image

from handler.consistency import Consistency
from handler.decision import Decision
from handler.errors import NoFaceFound
from handler.faces import FaceDetector, FaceSearch, FaceSettings, check_mode, crop_region, cut, detection_scale
from handler.fingerprint import Fingerprint, fingerprint, preview
from handler.geometry import Box
from handler.images import Decoded, ImageLimits, decode
from handler.media import one_by_one
from handler.provenance import READERS
from handler.verdicts import Outcome, Verdict, most_fake

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSubjects:
    """What gets classified for one image: face crops (with their boxes in original pixels) or the whole
    picture (no boxes). ``skipped`` are faces beyond the cap; ``regions`` is what each crop covers, in
    original pixels."""

    crops: list[Image.Image]
    boxes: list[Box]
    skipped: list[Box]
    mode: str
    regions: list[Box]
    original_size: tuple[int, int]
    media: str = "image"
    # The whole picture's perceptual hash, when records are kept (handler/fingerprint.py).
    fingerprint: Fingerprint | None = None
    # The search that ran (None in mode off): the detector's name and the smallest face, in original
    # pixels, it looks for in this image (``FaceDetector.smallest_face``).
    face_search: FaceSearch | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)  # an image keeps no hash beside its own
    picture: Image.Image | None = None  # the picture's preview (handler/fingerprint.py), for the record's thumbnail (records on)

    @property
    def analyzed(self) -> str:
        return "faces" if self.boxes else "image"

    def place(self, index: int) -> tuple[int | None, float | None, Box | None]:
        return (index, None, self.boxes[index]) if self.boxes else (None, None, None)

    def shown(self, outcome: Outcome, p_fake: Sequence[float]) -> list[int]:
        """Every crop, most-fake first (as the answer lists the faces)."""
        return sorted(range(len(self.crops)), key=lambda index: p_fake[index], reverse=True)

    @property
    def faces(self) -> int:
        return len(self.boxes)

    @property
    def size(self) -> tuple[int, int]:
        return self.original_size


def subjects_from(decoded: Decoded, mode: str, settings: FaceSettings, found: list[Box], search: FaceSearch | None = None) -> ImageSubjects:
    """Face crops of ``decoded`` from the faces ``found`` in it (largest first, in decoded pixels; none in
    mode off) by ``search``, or the whole image (off, or auto without a face). Faces beyond ``max_faces`` are
    listed as skipped. Raises ``NoFaceFound`` in mode faces when no face was found."""
    image = decoded.image
    sx, sy = decoded.scale
    if not found:
        if mode == "faces":
            raise NoFaceFound(
                f"no face {FaceSearch.at_least(search)}was found in the {decoded.original_size[0]}x{decoded.original_size[1]} image; "
                "send a photo with a visible frontal face, or face mode auto or off to classify the whole image"
            )
        return ImageSubjects([image], [], [], mode, [Box(0, 0, *decoded.original_size)], decoded.original_size, face_search=search)
    kept, extra = found[: settings.max_faces], found[settings.max_faces :]
    regions = [crop_region(image.size, box, settings.margin) for box in kept]
    return ImageSubjects(
        crops=[cut(image, region) for region in regions],
        boxes=[box.scaled(sx, sy) for box in kept],
        skipped=[box.scaled(sx, sy) for box in extra],
        mode=mode,
        regions=[region.scaled(sx, sy) for region in regions],
        original_size=decoded.original_size,
        face_search=search,
    )


class ImageMedia:
    """Still images: safe decoding (handler/images.py), then the face stage; with ``fingerprints`` also
    the picture's perceptual hash and the picture itself (records)."""

    name = "image"
    explains = True
    rechecks = True
    provenance = READERS

    def __init__(self, limits: ImageLimits, faces: FaceSettings, detector: Callable[[], FaceDetector], fingerprints: bool = False) -> None:
        self.limits, self.faces, self.detector, self.fingerprints = limits, faces, detector, fingerprints

    def accepts(self, payload: bytes) -> bool:
        return True

    def subjects_many(self, requests: Sequence[tuple[bytes, str]]) -> list[ImageSubjects | Exception]:
        """Each image decoded on its own, then the faces of all that want them found in one go."""
        decoded = one_by_one(self._decode, requests)
        searched = [i for i, (item, (_, mode)) in enumerate(zip(decoded, requests)) if isinstance(item, Decoded) and mode != "off"]
        try:
            faces_of = self._faces([decoded[i] for i in searched])
        except Exception as error:  # noqa: BLE001 - e.g. the detector failed to load: only the requests that need it fail
            faces_of = [(error, None)] * len(searched)
        found = dict(zip(searched, faces_of))  # index -> (boxes or the search's exception, FaceSearch)

        def made(index: int, mode: str) -> ImageSubjects:
            item, (faces, search) = decoded[index], found.get(index, ([], None))
            for failure in (item, faces):
                if isinstance(failure, Exception):
                    raise failure
            subjects = subjects_from(item, mode, self.faces, faces, search)
            if not self.fingerprints:
                return subjects
            small = preview(item.image)  # hashed, and kept as the record's thumbnail
            return replace(subjects, fingerprint=fingerprint(small), picture=small)

        return one_by_one(made, [(index, mode) for index, (_, mode) in enumerate(requests)])

    def decide(self, subjects: ImageSubjects, found: Sequence[Verdict], decision: Decision, rechecks: Sequence[Verdict]) -> Outcome:
        """The most-fake face decides (handler/verdicts.py:most_fake), or the whole image; with the
        consistency check on, its re-encoded copy's verdict rides along."""
        deciding = most_fake([v.probabilities for v in found], decision.fake_label)
        recheck = Consistency.check(found[deciding], rechecks[deciding]) if rechecks else None
        return Outcome(found[deciding], deciding if subjects.boxes else None, recheck=recheck)

    def _decode(self, payload: bytes, mode: str) -> Decoded:
        check_mode(mode)
        return decode(payload, self.limits)

    def _faces(self, decoded: list[Decoded]) -> list[tuple[list[Box] | Exception, FaceSearch]]:
        """The faces of each image, in one batched call (if that call fails, image by image, so only the
        image at fault fails), each with what its search could see."""
        if not decoded:
            return []
        detector = self.detector()
        images, scales = [item.image for item in decoded], [detection_scale(item) for item in decoded]
        searches = [FaceSearch.tried(detector, image.size, scale) for image, scale in zip(images, scales)]
        try:
            found = detector.detect_many(images, scales)
        except Exception:  # noqa: BLE001 - find the image at fault
            logger.warning("the batched face search of %d images failed; searching them one by one", len(decoded), exc_info=True)
            found = one_by_one(detector.detect, zip(images, scales))
        return list(zip(found, searches))
