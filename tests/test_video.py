"""Videos in the core: sampling, people across frames, the confident strategy, and every limit, on
generated clips (deepfake_service/samples/videogen.py) and the tiny ViT. Served video is in test_serving.py."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_service.samples import imagegen, videogen
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.detectors import HaarDetector
from handler.errors import ClientError
from handler.faces import OneByOne
from handler.geometry import Box
from handler.options import HandlerOptions
from handler.tracking import FrameSearch, link_people
from handler.verdicts import confident_frames
from handler.video import VideoSettings, container_format

FRAMES = 8


@pytest.fixture(scope="module")
def video_classifier(tiny_checkpoint) -> DeepfakeClassifier:
    options = HandlerOptions(face_mode="auto", video_frames=FRAMES, fake_label="synthetic", video_confident_min=2)
    return DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options, forward_batch=4)


@pytest.fixture(scope="module")
def two_people() -> bytes:
    return videogen.clip(people=2)


def answer_of(classifier, payload: bytes, mode: str | None = None):
    return classifier.predict_batch([Request(payload, mode)])[0]


def test_containers_are_recognised_by_content_not_name():
    assert container_format(videogen.clip(count=2)) == "mov"
    assert container_format(videogen.clip(count=2, codec="libvpx-vp9", fmt="webm")) == "matroska"
    assert container_format(videogen.clip(count=2, codec="mpeg4", fmt="avi")) == "avi"
    assert container_format(imagegen.jpeg()) is None and container_format(b"") is None


def test_two_people_are_two_tracks_with_boxes_that_follow_them_in_original_pixels(video_classifier, two_people):
    answer = answer_of(video_classifier, two_people)
    assert (answer["media"], answer["analyzed"], answer["frames_analyzed"]) == ("video", "faces", FRAMES)
    assert answer["image_size"] == [640, 360] and answer["duration_s"] == pytest.approx(2.0, abs=0.11)
    assert len(answer["people"]) == 2
    movers = {}
    for person in answer["people"]:
        assert person["frames_seen"] == FRAMES == len(person["timeline"])
        xs = [point["box"][0] for point in person["timeline"]]
        movers[person["id"]] = xs[-1] - xs[0]
        # Every box sits where that astronaut's face was pasted in that frame (frame index = t x 10 fps).
        for point in person["timeline"]:
            frame = round(point["t"] * 10)
            x, y, w, h = point["box"]
            first = 10 + frame * 6 + videogen.FACE_IN_PASTE[0]
            second = 640 - videogen.FACE_SIDE - 10 - frame * 3 + (videogen.FACE_SIDE - videogen.FACE_IN_PASTE[0] - videogen.FACE_IN_PASTE[2])
            assert min(abs(x - first), abs(x - second)) <= 10, (frame, point["box"])
            assert 30 <= w <= 60 and 0 <= y <= 360 - h
    assert sorted(movers.values())[0] < 0 < sorted(movers.values())[1]  # one walks left, one right
    assert answer["decided_by_person"] in (0, 1)
    decider = answer["people"][answer["decided_by_person"]]
    assert answer["probabilities"] == decider["probabilities"] and answer["verdict"] == decider["verdict"]


def test_a_clip_without_faces_aggregates_whole_frames_or_is_422_in_faces_mode(video_classifier):
    payload = videogen.clip(people=0, count=12)
    answer = answer_of(video_classifier, payload)
    assert (answer["analyzed"], answer["people"], answer["decided_by_person"]) == ("frames", [], None)
    assert len(answer["timeline"]) == FRAMES and sum(answer["probabilities"].values()) == pytest.approx(1.0)
    # a 640x360 frame: the cascade looks at it whole; its first window of at least face_min_size is 35 px
    assert answer["face_search"] == {"detector": "haar", "smallest_face": 35}
    error = error_of(video_classifier, payload, "faces")
    assert (error.status, error.error) == (422, "no face found")
    assert f"no face of at least 35 px was found in {FRAMES} sampled frames" in error.detail
    assert answer_of(video_classifier, payload, "off")["face_search"] is None


def error_of(classifier, payload: bytes, mode: str | None = None) -> ClientError:
    result = classifier.predict_batch([Request(payload, mode)])[0]
    assert isinstance(result, ClientError), result
    return result


def test_a_rotation_tag_is_applied_before_faces_are_looked_for(video_classifier):
    turned = videogen.rotation_tag(videogen.clip(people=1, count=10, turned=90), 90)
    answer = answer_of(video_classifier, turned)
    assert answer["image_size"] == [640, 360]  # displayed upright, as stored turned
    assert answer["analyzed"] == "faces" and len(answer["people"]) == 1


def test_variable_frame_rate_samples_by_time(video_classifier):
    stamps = [0, 40, 80, 500, 540, 580, 1500, 1540, 1580, 1900, 1950, 2000]  # ms: bursts and gaps
    answer = answer_of(video_classifier, videogen.clip(people=1, count=len(stamps), pts=stamps))
    times = [point["t"] for point in answer["people"][0]["timeline"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[0] <= 0.1 and times[-1] >= 1.5  # spread over the clip, not the first frames
    assert 2.0 <= answer["duration_s"] <= 2.25  # the last frame's own duration is estimated from the mean rate


def test_forward_passes_are_even_and_at_most_twice_the_batch_size(video_classifier, two_people):
    sizes = []
    runtime = video_classifier.runtime
    original = runtime.predict

    def recording(pixels):
        sizes.append(len(pixels))
        return original(pixels)

    runtime.predict = recording
    try:
        answer_of(video_classifier, two_people)
    finally:
        runtime.predict = original
    assert sum(sizes) == 2 * FRAMES and max(sizes) <= 8 and max(sizes) - min(sizes) <= 1, sizes
    assert len(sizes) == -(-2 * FRAMES // 8)  # as few passes as the cap allows


def test_faces_beyond_the_cap_are_listed_with_their_time_and_box(tiny_checkpoint, two_people):
    options = HandlerOptions(face_mode="auto", video_frames=FRAMES, fake_label="synthetic", max_faces=1)
    answer = answer_of(DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options), two_people)
    assert answer["faces_skipped"], answer["faces_skipped"]
    for skipped in answer["faces_skipped"]:
        assert set(skipped) == {"t", "box"} and 0 <= skipped["t"] <= answer["duration_s"] and len(skipped["box"]) == 4
    assert all(person["frames_seen"] <= FRAMES for person in answer["people"])  # one face a frame


def test_a_video_in_a_batch_leaves_the_images_answers_untouched(video_classifier, two_people):
    images = [imagegen.jpeg(seed=s) for s in range(3)]
    alone = video_classifier.predict_batch(images)
    mixed = video_classifier.predict_batch([images[0], two_people, images[1], b"\x00\x00\x00\x18ftypisom broken", images[2]])
    for single, together in zip(alone, [mixed[0], mixed[2], mixed[4]]):
        assert together["media"] == "image" and together["label"] == single["label"]
        assert together["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    assert mixed[1]["media"] == "video" and isinstance(mixed[3], ClientError)


SETTINGS = VideoSettings(frames=32, max_bytes=1, max_seconds=1, max_pixels=1, max_streams=1, codecs=("h264",), budget_s=1,
                         high=0.8, low=0.2, confident_min=11, low_share=0.9, full_search_every=4)


def test_the_confident_strategy_on_hand_made_frame_scores():
    fake = [0.9] * 14 + [0.5] * 18  # 14 > 11 and 14 > 32 / 2.5: the mean of the confident frames
    assert confident_frames(fake, SETTINGS) == list(range(14))
    few = [0.9] * 12 + [0.5] * 20  # 12 < 12.8: not enough; not 90 % low either: every frame
    assert confident_frames(few, SETTINGS) == list(range(32))
    real = [0.1] * 30 + [0.6] * 2  # 30 > 0.9 x 32: the mean of the low ones
    assert confident_frames(real, SETTINGS) == list(range(30))


def test_a_track_bridges_several_missed_frames_and_two_people_stay_two():
    """The left person drifts right and is missed in 5 sampled frames; the right one stays put."""
    left = [Box(100 + 12 * i, 200, 88, 88) for i in range(14)]
    right = Box(900, 210, 90, 90)
    detections = [[left[i], right] if i not in (3, 4, 5, 6, 7) else [right] for i in range(14)]
    people = link_people(detections)
    assert len(people) == 2
    assert [frame for frame, _ in people[0]] == [0, 1, 2, 8, 9, 10, 11, 12, 13]
    assert [box for _, box in people[1]] == [right] * 14
    assert len(link_people(detections, max_gap=2)) == 3  # without bridging the left person splits


def test_faces_are_linked_across_a_missed_frame_and_not_across_the_frame():
    a, b = Box(10, 10, 50, 50), Box(300, 10, 50, 50)
    detections = [[a, b], [Box(16, 10, 50, 50)], [Box(22, 11, 50, 50), Box(306, 10, 50, 50)], [Box(28, 10, 50, 50)]]
    people = link_people(detections)
    assert [[frame for frame, _ in track] for track in people] == [[0, 1, 2, 3], [0, 2]]


@pytest.mark.parametrize(
    ("payload", "options", "status", "error", "says"),
    [
        (lambda: videogen.clip(count=4), {"video_max_bytes": 1000}, 413, "video too large", "bytes"),
        (lambda: videogen.clip(count=30), {"video_max_seconds": 1.0}, 413, "video too large", "lasts"),
        (lambda: videogen.clip(count=4), {"video_max_pixels": 320 * 240}, 413, "video too large", "pixels"),
        (lambda: videogen.clip(count=4, audio=True), {"video_max_streams": 1}, 413, "video too large", "streams"),
        (lambda: videogen.clip(count=4, codec="mpeg4", fmt="avi"), {"video_codecs": "h264,vp9"}, 415, "unsupported video", "mpeg4"),
        (lambda: videogen.clip(count=4, codec="png", fmt="mov"), {}, 415, "unsupported video", "png"),  # frames as PNG images
        (videogen.audio_only, {}, 415, "unsupported video", "no video stream"),
        (videogen.no_frames, {}, 422, "no frames", "before its first frame"),
        (lambda: videogen.clip(count=4)[:600], {}, 400, "corrupt video", "cannot be decoded"),
        (lambda: b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8, {}, 400, "corrupt video", "cannot be decoded"),
    ],
    ids=["bytes", "duration", "pixels", "streams", "codec", "image-sequence", "audio-only", "zero-frame", "truncated", "corrupt"],
)
def test_each_limit_and_bad_file_is_a_4xx_naming_it(tiny_checkpoint, payload, options, status, error, says):
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="auto", video_frames=4, **options))
    result = error_of(classifier, payload())
    assert (result.status, result.error) == (status, error)
    assert says in result.detail


def test_container_metadata_that_is_not_utf8_does_not_stop_the_video(video_classifier):
    answer = answer_of(video_classifier, videogen.with_bad_metadata(videogen.clip(count=8)))
    assert answer["media"] == "video" and answer["frames_analyzed"] == FRAMES


def test_a_truncated_tail_keeps_the_frames_before_it(video_classifier):
    # Fragmented MP4 (as recorders and streams write it), a fragment per 5 frames: a cut keeps those before it.
    payload = videogen.clip(people=1, count=30, gop=5, options={"movflags": "frag_keyframe+empty_moov"})
    answer = answer_of(video_classifier, payload[: len(payload) * 6 // 10])
    assert answer["media"] == "video" and 1 <= answer["frames_analyzed"] <= FRAMES


def test_a_detector_that_cannot_say_its_smallest_face_still_answers_a_video(tiny_checkpoint, two_people):
    class Unsure(HaarDetector):
        def smallest_face(self, size, scale=1.0):
            raise RuntimeError("a plug-in detector's surprise")

    options = HandlerOptions(face_mode="auto", video_frames=FRAMES, fake_label="synthetic", video_confident_min=2)
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options, forward_batch=4)
    classifier._detector = Unsure(options.face_detect_side, options.face_min_size)
    answer = answer_of(classifier, two_people)
    assert len(answer["people"]) == 2 and answer["face_search"] is None
    error = error_of(classifier, videogen.clip(people=0, count=12), "faces")
    assert (error.status, error.error) == (422, "no face found") and "no face was found in" in error.detail


def test_a_video_cannot_be_explained(video_classifier, two_people):
    result = video_classifier.predict_batch([Request(two_people, explain=True)])[0]
    assert isinstance(result, ClientError) and result.status == 400 and "images" in result.detail


def test_the_sampling_budget_stops_a_slow_clip(tiny_checkpoint):
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="auto", video_budget_s=0.0))
    result = error_of(classifier, videogen.clip(count=10))
    assert (result.status, result.error) == (422, "video too slow to sample")


class SquareFinder(OneByOne):
    """A stand-in detector: every white square of an image is a face. Remembers the size of each image it
    was asked about (whole frames vs windows)."""

    name = "squares"
    min_face = 8

    def __init__(self):
        self.asked: list[tuple[int, int]] = []
        self.scales: list[float] = []

    def detect(self, image, scale: float = 1.0):
        from scipy import ndimage

        self.asked.append(image.size)
        self.scales.append(scale)
        labelled, _ = ndimage.label(np.asarray(image.convert("L")) > 128)
        boxes = [Box(s[1].start, s[0].start, s[1].stop - s[1].start, s[0].stop - s[0].start) for s in ndimage.find_objects(labelled)]
        return sorted(boxes, key=lambda b: (-b.w * b.h, b.x, b.y))


def frame_with(*squares: tuple[int, int], size=(640, 360), side: int = 40):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for x, y in squares:
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=(255, 255, 255))
    return image


def test_frame_search_looks_at_whole_frames_every_nth_and_only_around_known_faces_between():
    finder = SquareFinder()
    search = FrameSearch(finder, full_every=4)
    found = [search.find(0.25 * i, frame_with((100 + 12 * i, 80))) for i in range(8)]
    assert [boxes for boxes in found] == [[Box(100 + 12 * i, 80, 40, 40)] for i in range(8)]  # in frame pixels
    whole = [size == (640, 360) for size in finder.asked]
    assert whole == [True, False, False, False, True, False, False, False] and search.whole == 2
    assert all(w <= 3 * 40 and h <= 3 * 40 for (w, h), is_whole in zip(finder.asked, whole) if not is_whole)


def test_a_window_is_searched_for_faces_of_at_least_half_the_size_of_the_one_it_follows():
    finder = SquareFinder()
    search = FrameSearch(finder, full_every=4)
    for i, side in enumerate((40, 40, 10)):
        search.find(0.25 * i, frame_with((100, 80), side=side))
    # whole frame: the detector's own minimum; the window around the 40-px face: faces from 20 px
    assert finder.scales == [1.0, 40 / 2 / finder.min_face, 40 / 2 / finder.min_face]
    finder.scales.clear()
    search.find(0.75, frame_with((100, 80), side=10))  # a window around the 10-px face
    assert finder.scales == [1.0]  # never below the detector's own minimum


def test_a_newcomer_is_found_at_the_next_whole_frame_and_far_apart_frames_are_searched_whole():
    search = FrameSearch(SquareFinder(), full_every=4)
    found = [search.find(0.25 * i, frame_with((100, 80), *([(400, 200)] if i >= 2 else []))) for i in range(6)]
    assert [len(boxes) for boxes in found] == [1, 1, 1, 1, 2, 2]  # seen from the whole-frame pass at frame 4 on
    finder = SquareFinder()
    far = FrameSearch(finder, full_every=4)
    for i in range(4):
        far.find(2.0 * i, frame_with((100, 80)))
    assert finder.asked == [(640, 360)] * 4  # 2 s apart: a face may have gone anywhere


def test_a_face_that_left_its_window_is_looked_for_in_the_whole_next_frame():
    finder = SquareFinder()
    search = FrameSearch(finder, full_every=8)
    positions = [(100, 80), (110, 80), (500, 250), (505, 250)]  # a jump at frame 2 (a cut)
    found = [search.find(0.1 * i, frame_with(p)) for i, p in enumerate(positions)]
    assert [len(boxes) for boxes in found] == [1, 1, 0, 1]
    assert [size == (640, 360) for size in finder.asked] == [True, False, False, True]


def test_the_worker_threads_reach_the_decoder_and_leave_its_frames_as_they_were(two_people):
    """``threads`` (the handler option) reaches the video settings (handler/video.py gives it to FFmpeg's decoder);
    a clip decoded on one thread gives the same frames as on FFmpeg's default."""
    from handler.video import sample_frames

    def frames(threads: int) -> list[tuple[float, bytes]]:
        seen: list[tuple[float, bytes]] = []
        settings = HandlerOptions(threads=threads).video
        assert settings.threads == threads
        sample_frames(two_people, settings, lambda time, image: seen.append((time, image.tobytes())))
        return seen

    one, every = frames(1), frames(0)
    assert len(one) >= 8 and [t for t, _ in one] == [t for t, _ in every]
    assert all(a == b for (_, a), (_, b) in zip(one, every))  # decoding is exact whatever the thread count
