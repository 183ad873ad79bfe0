"""Media kinds: each turns a request's bytes into the subjects to classify. One seam per kind.

A kind says whether it ``accepts`` a payload (by content, never by name or Content-Type) and makes its
``subjects``. The classifier asks the kinds in order; images come last and accept anything, so bytes
no kind recognises get the image decoder's "not an image" error. Videos are handler/video.py:VideoMedia; a new kind is a class
here, listed before images.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Iterable, Protocol, Sequence, TypeVar

from handler.faces import FaceDetector, FaceSearch, FaceSettings, Subjects, check_mode, detection_scale, subjects_from
from handler.fingerprint import fingerprint
from handler.geometry import Box
from handler.images import Decoded, ImageLimits, decode

logger = logging.getLogger(__name__)
T = TypeVar("T")


class MediaKind(Protocol):
    name: str

    def accepts(self, payload: bytes) -> bool:
        """True when this kind decodes ``payload``."""

    def subjects(self, payload: bytes, mode: str) -> Subjects:
        """What to classify in ``payload`` under face ``mode``; raises ``ClientError`` for bad input."""

    def subjects_many(self, requests: Sequence[tuple[bytes, str]]) -> list[Subjects | Exception]:
        """``subjects`` of each (payload, mode), a failure as that request's exception (never raised), in one
        go where the kind can batch them."""


def one_by_one(call: Callable[[Any, Any], T], pairs: Iterable[tuple[Any, Any]]) -> list[T | Exception]:
    """``call`` on each pair of arguments in turn (a request's payload and mode, an image and its scale),
    a failure as that pair's exception: one item's answer, never its batch-mates'."""
    results: list[T | Exception] = []
    for first, second in pairs:
        try:
            results.append(call(first, second))
        except Exception as error:  # noqa: BLE001 - the item's own answer
            results.append(error)
    return results


class ImageMedia:
    """Still images: safe decoding (handler/images.py), then the face stage; with ``fingerprints`` also
    the picture's perceptual hash (records)."""

    name = "image"

    def __init__(self, limits: ImageLimits, faces: FaceSettings, detector: Callable[[], FaceDetector], fingerprints: bool = False) -> None:
        self.limits, self.faces, self.detector, self.fingerprints = limits, faces, detector, fingerprints

    def accepts(self, payload: bytes) -> bool:
        return True

    def subjects(self, payload: bytes, mode: str) -> Subjects:
        (result,) = self.subjects_many([(payload, mode)])
        if isinstance(result, Exception):
            raise result
        return result

    def subjects_many(self, requests: Sequence[tuple[bytes, str]]) -> list[Subjects | Exception]:
        """Each image decoded on its own, then the faces of all that want them found in one go."""
        decoded = one_by_one(self._decode, requests)
        searched = [i for i, (item, (_, mode)) in enumerate(zip(decoded, requests)) if isinstance(item, Decoded) and mode != "off"]
        try:
            faces_of = self._faces([decoded[i] for i in searched])
        except Exception as error:  # noqa: BLE001 - e.g. the detector failed to load: only the requests that need it fail
            faces_of = [(error, None)] * len(searched)
        found = dict(zip(searched, faces_of))  # index -> (boxes or the search's exception, FaceSearch)
        results: list[Subjects | Exception] = []
        for index, (item, (_, mode)) in enumerate(zip(decoded, requests)):
            faces, search = found.get(index, ([], None))
            if isinstance(item, Exception) or isinstance(faces, Exception):
                results.append(item if isinstance(item, Exception) else faces)
                continue
            try:
                made = subjects_from(item, mode, self.faces, faces, search)
                results.append(replace(made, fingerprint=fingerprint(item.image)) if self.fingerprints else made)
            except Exception as error:  # noqa: BLE001 - this request's answer, never its batch-mates'
                results.append(error)
        return results

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
