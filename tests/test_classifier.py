"""The inference core on a tiny ViT: preprocessing, labels, batching, per-request errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoImageProcessor

from deepfake_service.samples import imagegen
from handler.analysis import Request
from handler.checkpoint import CheckpointError
from handler.classifier import DeepfakeClassifier, pass_sizes
from handler.errors import EmptyInput, ImageTooLarge, MissingImage, RequestFailed, UnsupportedMediaType
from handler.faces import OneByOne
from handler.images import decode_image
from handler.media import one_by_one
from handler.options import HandlerOptions
from handler.verdicts import most_fake
from tests.tiny import TINY_LABELS


def test_preprocessing_equals_the_checkpoints_image_processor(classifier, tiny_checkpoint):
    images = [decode_image(imagegen.jpeg(seed=s, width=50 + s, height=30), classifier.limits) for s in range(3)]
    reference = AutoImageProcessor.from_pretrained(tiny_checkpoint)(images=images, return_tensors="pt")["pixel_values"]
    ours = classifier.preprocess(images)
    assert ours.shape == (3, 3, 32, 32)
    assert torch.equal(ours, reference)


def test_labels_come_from_config_id2label(classifier):
    prediction = classifier.predict_batch([imagegen.png()])[0]
    assert list(prediction["probabilities"]) == [TINY_LABELS[i] for i in range(3)]
    assert prediction["label"] in TINY_LABELS.values()


def test_prediction_fields_and_confidence(classifier):
    prediction = classifier.predict_batch([imagegen.png()])[0]
    assert set(prediction) == {
        "label", "confidence", "probabilities", "verdict", "decision", "model", "version", "demo", "runtime", "precision",
        "mode", "analyzed", "decided_by_face", "faces", "faces_skipped", "face_search", "image_size", "media", "provenance",
    }
    # No decision.json: uncalibrated, the verdict follows the top label (this model has no "Fake" label).
    assert prediction["decision"]["calibrated"] is False
    assert prediction["decision"]["fake_threshold"] is None
    assert prediction["verdict"] == "real"
    assert (prediction["mode"], prediction["analyzed"], prediction["faces"]) == ("off", "image", [])
    assert (prediction["runtime"], prediction["precision"]) == ("torch", "fp32")
    assert prediction["confidence"] == max(prediction["probabilities"].values())
    assert prediction["probabilities"][prediction["label"]] == prediction["confidence"]
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert (prediction["model"], prediction["version"], prediction["demo"]) == ("tiny", "3.1", False)


def test_batch_of_n_equals_n_singles(classifier):
    payloads = [imagegen.jpeg(seed=s) for s in range(5)]
    batched = classifier.predict_batch(payloads)
    for payload, together in zip(payloads, batched):
        alone = classifier.predict_batch([payload])[0]
        assert alone["label"] == together["label"]
        for label, p in alone["probabilities"].items():
            assert together["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_bad_image_in_batch_does_not_fail_batch_mates(classifier):
    good = imagegen.png(seed=4)
    results = classifier.predict_batch([good, b"", b"not an image", good, imagegen.png_header(100_000, 100_000)])
    assert isinstance(results[1], EmptyInput)
    assert isinstance(results[2], UnsupportedMediaType)
    assert isinstance(results[4], ImageTooLarge)
    alone = classifier.predict_batch([good])[0]
    assert results[0]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
    # The same image at two rows of one forward pass: batched matmul kernels may round each row a little
    # differently (seen in the 9th decimal on AVX-512 CPUs), so the answers agree but for the last digits.
    assert results[3]["probabilities"] == pytest.approx(results[0]["probabilities"], abs=1e-6)
    assert results[3]["confidence"] == pytest.approx(results[0]["confidence"], abs=1e-6)
    first, second = ({k: v for k, v in results[i].items() if k not in ("probabilities", "confidence")} for i in (0, 3))
    assert second == first  # label, verdict and the rest: exactly the same


def test_a_batch_of_only_bad_inputs_runs_no_forward_pass(classifier):
    results = classifier.predict_batch([b"", b"x"])
    assert [type(r) for r in results] == [EmptyInput, UnsupportedMediaType]


def test_demo_checkpoint_is_marked_in_every_prediction(tiny_demo_checkpoint):
    demo = DeepfakeClassifier.from_checkpoint(tiny_demo_checkpoint, HandlerOptions())
    assert demo.predict_batch([imagegen.png()])[0]["demo"] is True


def test_pickle_only_checkpoint_is_refused(tiny_checkpoint, tmp_path):
    pickled = shutil.copytree(tiny_checkpoint, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        DeepfakeClassifier.from_checkpoint(pickled, HandlerOptions())


def test_checkpoint_without_preprocessor_is_refused(tiny_checkpoint, tmp_path):
    partial = shutil.copytree(tiny_checkpoint, tmp_path / "partial")
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        DeepfakeClassifier.from_checkpoint(partial, HandlerOptions())


def test_unknown_runtime_is_refused(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="unknown runtime"):
        DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(runtime="tensorrt"))


def test_detector_is_built_only_when_a_request_needs_faces(tiny_checkpoint):
    built = []

    class CountingDetector(OneByOne):
        name = "counting"

        def detect(self, image, scale=1.0):
            return []

    def factory():
        built.append(1)
        return CountingDetector()

    auto = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="auto"))
    auto._detector = factory
    auto.predict_batch([Request(imagegen.png(), face_mode="off"), Request(imagegen.png(), face_mode="off")])
    assert built == []
    auto.predict_batch([Request(imagegen.png(), face_mode="off"), Request(imagegen.png())])
    auto.predict_batch([imagegen.png()])
    assert built == [1]  # built once, on the first request that needed it


def test_a_client_error_from_the_adapter_is_that_requests_answer(classifier):
    refused = MissingImage("no image field found")
    results = classifier.predict_batch([Request(refused), Request(imagegen.png())])
    assert results[0] is refused and results[1]["label"] in TINY_LABELS.values()


def test_the_most_fake_face_decides_and_without_the_label_the_most_confident_one():
    faces = [{"Real": 0.9, "Fake": 0.1}, {"Real": 0.4, "Fake": 0.6}, {"Real": 0.3, "Fake": 0.7}]
    assert most_fake(faces, "Fake") == 2
    assert most_fake([{"a": 0.55, "b": 0.45}, {"a": 0.1, "b": 0.9}], "Fake") == 1


def test_an_unexpected_failure_on_one_request_is_its_own_500_with_an_error_id(classifier, caplog):
    class Exploding:
        name = "exploding"

        def accepts(self, payload):
            return payload.startswith(b"BOOM")

        def subjects(self, payload, mode):
            raise RuntimeError("a library's surprise")

        def subjects_many(self, requests):
            return one_by_one(self.subjects, requests)

    media = classifier.media
    classifier.media = (Exploding(), *media)
    try:
        good, failed, other = classifier.predict_batch([imagegen.jpeg(seed=1), b"BOOM and more", imagegen.png(seed=2)])
    finally:
        classifier.media = media
    assert isinstance(failed, RequestFailed) and failed.status == 500 and failed.error_id in failed.detail
    assert f"error id {failed.error_id}" in caplog.text and "a library's surprise" in caplog.text
    assert good["label"] in TINY_LABELS.values() and other["label"] in TINY_LABELS.values()


@pytest.mark.parametrize(("count", "most", "sizes"), [(0, 16, []), (3, 16, [3]), (11, 16, [11]), (16, 16, [16]),
                                                      (17, 16, [9, 8]), (20, 16, [10, 10]), (33, 16, [11, 11, 11]), (5, 1, [1] * 5)])
def test_forward_passes_are_as_few_as_the_cap_allows_and_even(count, most, sizes):
    assert pass_sizes(count, most) == sizes


def test_a_forward_pass_takes_at_least_one_crop():
    with pytest.raises(ValueError, match="at least one crop"):
        pass_sizes(4, 0)
