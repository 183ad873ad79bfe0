"""The face stage on real photos (scikit-image's public-domain astronaut and coffee), no mocks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as photos

from deepfake_service.samples.imagegen import photo_jpeg as jpeg
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.detectors import HaarDetector, create_detector
from handler.errors import BadOption, NoFaceFound
from handler.faces import Box, square_crop
from handler.images import decode
from handler.options import HandlerOptions
from handler.payload import face_mode
from tests.photos import ASTRONAUT_FACE, MIRRORED_FACE, as_box


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(photos.astronaut())


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(photos.coffee())


@pytest.fixture(scope="module")
def pair(astronaut) -> Image.Image:
    """Two people: the astronaut beside her mirror image (1024 x 512)."""
    canvas = Image.new("RGB", (1024, 512))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    return canvas


def faces_classifier(checkpoint, **options) -> DeepfakeClassifier:
    return DeepfakeClassifier.from_checkpoint(checkpoint, HandlerOptions(face_mode="auto", **options))


@pytest.fixture(scope="module")
def detector() -> HaarDetector:
    options = HandlerOptions()
    return HaarDetector(options.face_detect_side, options.face_min_size)


@pytest.fixture(scope="module")
def auto(tiny_checkpoint) -> DeepfakeClassifier:
    return faces_classifier(tiny_checkpoint)


def test_one_face_found_near_the_known_box(detector, astronaut):
    boxes = detector.detect(astronaut)
    assert len(boxes) == 1
    assert boxes[0].iou(ASTRONAUT_FACE) > 0.7, boxes


def test_no_face_in_a_photo_of_coffee(detector, coffee):
    assert detector.detect(coffee) == []


def test_two_people_give_two_boxes_in_the_right_places(detector, pair):
    boxes = sorted(detector.detect(pair), key=lambda b: b.x)
    assert len(boxes) == 2
    assert boxes[0].iou(ASTRONAUT_FACE) > 0.7 and boxes[1].iou(MIRRORED_FACE) > 0.7, boxes


def test_exif_rotated_photo_gives_boxes_in_the_rotated_frame(auto, pair):
    # Stored sideways (512 x 1024) with EXIF orientation 6: viewers rotate it 90 degrees clockwise upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = jpeg(pair.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    answer = auto.predict_batch([stored])[0]
    assert answer["image_size"] == [1024, 512]
    boxes = sorted((as_box(f["box"]) for f in answer["faces"]), key=lambda b: b.x)
    assert len(boxes) == 2
    assert boxes[0].iou(ASTRONAUT_FACE) > 0.6 and boxes[1].iou(MIRRORED_FACE) > 0.6, boxes


def test_threads_bound_opencv_in_this_process(astronaut):
    """``threads`` (the handler option, also the model runtime's) sets OpenCV's thread count for the process,
    as torch.set_num_threads sets torch's; 0 leaves OpenCV's default."""
    import cv2

    before = cv2.getNumThreads()
    try:
        options = HandlerOptions()
        assert create_detector("haar", None, options.face_detect_side, options.face_min_size, threads=1).detect(astronaut)
        assert cv2.getNumThreads() == 1
        create_detector("haar", None, options.face_detect_side, options.face_min_size)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


def test_boxes_are_in_original_pixels_after_a_reduced_jpeg_decode(tiny_checkpoint, astronaut):
    big = jpeg(astronaut.resize((2048, 2048), Image.Resampling.BICUBIC))
    classifier = faces_classifier(tiny_checkpoint, jpeg_draft_side=448)
    assert decode(big, classifier.limits).image.size == (512, 512)  # decoded at 1/4
    answer = classifier.predict_batch([big])[0]
    assert answer["image_size"] == [2048, 2048]
    (face,) = answer["faces"]
    expected = Box(*(4 * v for v in ASTRONAUT_FACE.as_list()))
    assert as_box(face["box"]).iou(expected) > 0.7, face["box"]


def test_auto_classifies_the_whole_image_when_no_face_is_found(auto, coffee):
    answer = auto.predict_batch([jpeg(coffee)])[0]
    assert (answer["mode"], answer["analyzed"], answer["faces"], answer["decided_by_face"]) == ("auto", "image", [], None)
    # "no face" means none of at least this size: the cascade's windows are 24 x 1.2^k px, and the first
    # of at least face_min_size (32) is 35
    assert answer["face_search"] == {"detector": "haar", "smallest_face": 35}
    whole = auto.classify([decode(jpeg(coffee), auto.limits).image])[0]
    assert answer["probabilities"] == pytest.approx(whole.probabilities)


def test_faces_mode_without_a_face_is_a_422_that_says_so(auto, coffee):
    (result,) = auto.predict_batch([Request(jpeg(coffee), face_mode="faces")])
    assert isinstance(result, NoFaceFound)
    assert result.status == 422 and result.error == "no face found"
    assert "no face of at least 35 px was found in the 600x400 image" in result.detail


def test_off_mode_classifies_the_whole_photo_even_with_faces(auto, astronaut):
    answer = auto.predict_batch([Request(jpeg(astronaut), face_mode="off")])[0]
    assert (answer["mode"], answer["analyzed"], answer["faces"], answer["face_search"]) == ("off", "image", [], None)


def test_per_face_probabilities_equal_classifying_the_crop_directly(auto, pair):
    payload = jpeg(pair)
    answer = auto.predict_batch([payload])[0]
    image = decode(payload, auto.limits).image
    assert len(answer["faces"]) == 2
    for face in answer["faces"]:
        crop = square_crop(image, as_box(face["box"]), auto.faces.margin)
        assert face["crop_pixels"] == list(crop.size)  # full-size decode: the crop as cut from the photo
        direct = auto.classify([crop])[0]
        assert face["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)
        assert face["label"] == direct.label


def test_a_detector_that_cannot_say_its_smallest_face_still_answers(tiny_checkpoint, astronaut):
    class Unsure(HaarDetector):
        def smallest_face(self, size, scale=1.0):
            raise RuntimeError("a plug-in detector's surprise")

    classifier = faces_classifier(tiny_checkpoint)
    classifier._detector = Unsure(640, 32)
    answer = classifier.predict_batch([jpeg(astronaut)])[0]
    assert (answer["analyzed"], len(answer["faces"]), answer["face_search"]) == ("faces", 1, None)


def test_the_cascades_smallest_face_is_its_smallest_window_tried(detector):
    assert detector.smallest_face((600, 400)) == 35  # windows 24, 29, 35: the first of at least 32
    assert detector.smallest_face((1920, 1080)) == 72  # the 24-px window in a 640-px copy
    assert detector.smallest_face((1000, 750), 0.25) == 150  # a 4000x3000 JPEG decoded at a quarter


def test_square_crop_adds_the_margin_and_stays_inside_the_image(pair):
    crop_box = Box(10, 100, 60, 40)  # near the left edge: the square must shift right, not pad
    crop = square_crop(pair, crop_box, margin=0.25)
    assert crop.size == (90, 90)
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(pair.crop((0, 75, 90, 165))))


def test_the_most_fake_face_decides_the_image_verdict(tiny_checkpoint, pair):
    classifier = faces_classifier(tiny_checkpoint, fake_label="synthetic")
    answer = classifier.predict_batch([jpeg(pair)])[0]
    scores = [f["probabilities"]["synthetic"] for f in answer["faces"]]
    assert answer["decided_by_face"] == scores.index(max(scores))
    assert answer["probabilities"] == answer["faces"][answer["decided_by_face"]]["probabilities"]


def test_faces_beyond_the_limit_are_reported_as_skipped(tiny_checkpoint, pair):
    classifier = faces_classifier(tiny_checkpoint, max_faces=1)
    answer = classifier.predict_batch([jpeg(pair)])[0]
    assert len(answer["faces"]) == 1 and len(answer["faces_skipped"]) == 1
    boxes = {tuple(answer["faces"][0]["box"]), tuple(answer["faces_skipped"][0]["box"])}
    assert len(boxes) == 2


def test_a_batch_of_0_1_and_2_face_photos_returns_each_requests_own_faces(auto, coffee, astronaut, pair):
    payloads = [jpeg(coffee), jpeg(astronaut), b"not an image", jpeg(pair)]
    batched = auto.predict_batch(payloads)
    assert [len(a["faces"]) for a in (batched[0], batched[1], batched[3])] == [0, 1, 2]
    for index in (0, 1, 3):
        alone = auto.predict_batch([payloads[index]])[0]
        assert [f["box"] for f in batched[index]["faces"]] == [f["box"] for f in alone["faces"]]
        assert batched[index]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)


def test_face_mode_comes_from_the_form_field_or_the_header():
    assert face_mode({"face_mode": b"faces"}, {"X-Face-Mode": "off"}) == "faces"
    assert face_mode({}, {"x-face-mode": " OFF "}) == "off"
    assert face_mode({}, {}) is None
    with pytest.raises(BadOption, match="maybe"):
        face_mode({}, {"X-Face-Mode": "maybe"})
    with pytest.raises(BadOption):
        face_mode({"face_mode": b"\xff" * 10_000}, {})


def test_an_unknown_mode_in_the_core_is_a_bad_option(auto, astronaut):
    (result,) = auto.predict_batch([Request(jpeg(astronaut), face_mode="sometimes")])
    assert isinstance(result, BadOption) and result.status == 400


def test_faces_mode_default_comes_from_the_handler_options(tiny_checkpoint, coffee):
    strict = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="faces"))
    assert strict.faces == HandlerOptions(face_mode="faces").faces and strict.faces.mode == "faces"
    assert isinstance(strict.predict_batch([jpeg(coffee)])[0], NoFaceFound)


class CountingDetector(HaarDetector):
    """The Haar cascade, counting batched calls; ``broken`` images (by size) make it raise."""

    def __init__(self, broken: tuple[int, int] | None = None):
        super().__init__(640, 32)
        self.batches, self.broken = [], broken

    def detect(self, image, scale: float = 1.0):
        if image.size == self.broken:
            raise RuntimeError("a detector's surprise")
        return super().detect(image, scale)

    def detect_many(self, images, scales):
        self.batches.append(len(images))
        return super().detect_many(images, scales)


def test_the_images_of_a_batch_are_searched_for_faces_in_one_call(tiny_checkpoint, coffee, astronaut, pair):
    counting = CountingDetector()
    classifier = faces_classifier(tiny_checkpoint)
    classifier._detector = counting
    requests = [jpeg(coffee), jpeg(astronaut), Request(jpeg(pair), face_mode="off"), jpeg(pair), b"not an image"]
    answers = classifier.predict_batch(requests)
    assert counting.batches == [3]  # the broken bytes and the request with faces off are not searched
    assert [len(a["faces"]) for a in answers[:4]] == [0, 1, 0, 2] and answers[4].status == 415


def test_an_image_the_detector_fails_on_fails_alone(tiny_checkpoint, coffee, astronaut, pair, caplog):
    classifier = faces_classifier(tiny_checkpoint)
    classifier._detector = CountingDetector(broken=astronaut.size)
    good, failed, other = classifier.predict_batch([jpeg(coffee), jpeg(astronaut), jpeg(pair)])
    assert failed.status == 500 and "a detector's surprise" in caplog.text
    assert good["analyzed"] == "image" and len(other["faces"]) == 2


def test_a_detector_that_fails_to_load_fails_only_the_requests_that_need_faces(tiny_checkpoint, coffee):
    classifier = faces_classifier(tiny_checkpoint)

    def missing_model():
        raise FileNotFoundError("the face model is missing")

    classifier._detector = missing_model
    needs, off, bad = classifier.predict_batch([jpeg(coffee), Request(jpeg(coffee), face_mode="off"), b"not an image"])
    assert needs.status == 500 and off["analyzed"] == "image" and bad.status == 415
