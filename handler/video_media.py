"""Videos as a media kind: sampled frames (handler/video.py), faces per frame linked into people
(handler/tracking.py), whole frames when no frame shows a face, and each person's verdict over their frames
(handler/verdicts.py:over_frames), the most-fake person deciding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from PIL import Image

from handler.decision import Decision
from handler.errors import NoFaceFound
from handler.faces import FaceDetector, FaceSearch, FaceSettings, check_mode, crop_region, cut, shrunk
from handler.fingerprint import Fingerprint, fingerprint, preview
from handler.geometry import Box
from handler.media import one_by_one
from handler.tracking import FrameSearch, link_people
from handler.verdicts import Outcome, Person, Verdict, most_fake, over_frames, verdict_of
from handler.video import Sampled, VideoSettings, container_format, sample_frames

KEEP_SIDE = 448  # crops and whole frames are kept at most this long (the model sees 224)
SHOWN_PER_PERSON = 3  # the deciding frames of each person a record keeps


@dataclass
class VideoSubjects:
    """What gets classified for one video: ``crops`` (faces of every sampled frame, or whole frames), and
    for each crop its owner (person index, or -1 for a whole frame) and its sampled frame. ``skipped``:
    (time, box) of each face beyond the per-frame cap."""

    crops: list[Image.Image]
    owners: list[tuple[int, int]]
    boxes: list[Box | None]
    times: list[float]
    people: int
    mode: str
    sampled: Sampled
    skipped: list[tuple[float, Box]] = field(default_factory=list)
    media: str = field(default="video")
    fingerprints: list[Fingerprint] = field(default_factory=list)  # one per sampled frame, when records are kept
    face_search: FaceSearch | None = None  # what a whole frame's search could see (None in mode off)
    fingerprint: Fingerprint | None = None  # a clip is not matched against labelled records
    picture: Image.Image | None = None  # the first sampled frame with a face (else the first), for the record (records on)

    @property
    def analyzed(self) -> str:
        return "faces" if self.people else "frames"

    def place(self, index: int) -> tuple[int | None, float | None, Box | None]:
        person, frame = self.owners[index]
        return (person if self.people else None), self.times[frame], self.boxes[index]

    def shown(self, outcome: Outcome, p_fake: Sequence[float]) -> list[int]:
        """Each person's deciding frames (the whole frames' without people), ``SHOWN_PER_PERSON`` of them:
        most-fake first when that person's verdict (the clip's, without people) is fake or uncertain,
        least-fake first when it is real."""
        groups = [(person.crops, person.verdict) for person in outcome.people] or [(range(len(self.crops)), outcome.verdict)]
        chosen: list[int] = []
        for crops, verdict in groups:
            chosen += sorted(crops, key=lambda index: p_fake[index], reverse=verdict.verdict != "real")[:SHOWN_PER_PERSON]
        return chosen

    @property
    def faces(self) -> int:
        return len(self.crops) if self.people else 0

    @property
    def size(self) -> tuple[int, int]:
        return self.sampled.size


def _keep(image: Image.Image) -> Image.Image:
    """``image`` shrunk so its longer side is at most ``KEEP_SIDE``: the model sees 224 pixels."""
    return shrunk(image, KEEP_SIDE)[0]


class VideoMedia:
    """Videos: sampled frames, faces per frame linked into people, whole frames without faces; with
    ``fingerprints`` also each sampled frame's perceptual hash (records)."""

    name = "video"
    explains = False
    rechecks = False
    provenance = ("c2pa", "xmp")  # EXIF and PNG chunks are still-image metadata

    def __init__(self, settings: VideoSettings, faces: FaceSettings, detector: Callable[[], FaceDetector], fingerprints: bool = False) -> None:
        self.settings, self.faces, self.detector, self.fingerprints = settings, faces, detector, fingerprints

    def accepts(self, payload: bytes) -> bool:
        return container_format(payload) is not None

    def subjects_many(self, requests: Sequence[tuple[bytes, str]]) -> list[VideoSubjects | Exception]:
        return one_by_one(self.subjects, requests)  # a clip's frames are already many detections

    def decide(self, subjects: VideoSubjects, found: Sequence[Verdict], decision: Decision, rechecks: Sequence[Verdict]) -> Outcome:
        """Each person's verdict over their frames, the most-fake person deciding; without people, the
        whole frames aggregated the same way."""
        if not subjects.people:
            probabilities, _ = over_frames(found, decision.fake_label, self.settings)
            return Outcome(verdict_of(probabilities, decision))
        people = []
        for person in range(subjects.people):
            mine = tuple(i for i, (owner, _) in enumerate(subjects.owners) if owner == person)
            probabilities, used = over_frames([found[i] for i in mine], decision.fake_label, self.settings)
            people.append(Person(mine, verdict_of(probabilities, decision), used))
        deciding = most_fake([p.verdict.probabilities for p in people], decision.fake_label)
        return Outcome(people[deciding].verdict, deciding, tuple(people))

    def subjects(self, payload: bytes, mode: str) -> VideoSubjects:
        check_mode(mode)
        times: list[float] = []
        thumbnails: list[Image.Image | None] = []
        found: list[list[Box]] = []
        face_crops: list[list[Image.Image]] = []
        skipped: list[tuple[float, Box]] = []
        prints: list[Fingerprint] = []
        picture: dict = {}  # "frame": the first with a face, else the first (records on)
        search = FrameSearch(self.detector(), self.settings.full_search_every) if mode != "off" else None

        def on_frame(t: float, image: Image.Image) -> None:
            times.append(t)
            boxes = search.find(t, image) if search is not None else []
            skipped.extend((t, box) for box in boxes[self.faces.max_faces :])
            boxes = boxes[: self.faces.max_faces]
            found.append(boxes)
            face_crops.append([_keep(cut(image, crop_region(image.size, box, self.faces.margin))) for box in boxes])
            # A whole frame is classified only when no sampled frame shows a face: a frame with faces never
            # needs its copy, and shrinking a large frame costs a noticeable share of a clip's time.
            thumbnails.append(None if boxes else _keep(image))
            if self.fingerprints:
                prints.append(fingerprint(image))
                if "frame" not in picture or (boxes and not picture.get("faces")):
                    picture.update(frame=preview(image), faces=bool(boxes))

        sampled = sample_frames(payload, self.settings, on_frame)
        searched = None if search is None else FaceSearch.tried(search.detector, sampled.size)
        people = link_people(found) if any(found) else []
        if not people:
            if mode == "faces":
                raise NoFaceFound(f"no face {FaceSearch.at_least(searched)}was found in {sampled.frames} sampled frames; "
                                  "send face mode auto or off to classify whole frames")
            return VideoSubjects(thumbnails, [(-1, i) for i in range(len(times))], [None] * len(times), times, 0, mode, sampled,
                                 fingerprints=prints, face_search=searched, picture=picture.get("frame"))
        crops, owners, boxes = [], [], []
        for person, track in enumerate(people):
            for frame, box in track:
                crops.append(face_crops[frame][found[frame].index(box)])
                owners.append((person, frame))
                boxes.append(box)
        return VideoSubjects(crops, owners, boxes, times, len(people), mode, sampled, skipped, fingerprints=prints, face_search=searched,
                             picture=picture.get("frame"))
