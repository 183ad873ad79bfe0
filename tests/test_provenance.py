"""Provenance beside the verdict: C2PA content credentials signed in the test (valid, trusted, tampered,
malformed), XMP and PNG generator metadata, stripped files; in the core and through a real TorchServe."""

from __future__ import annotations

import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from deepfake_service.packaging.archive import build_mar
from deepfake_service.samples import imagegen, provenancegen
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions
from handler.provenance import ProvenanceReader, ProvenanceSettings
from tests.servers import model_config, sent_together
from tests.tiny import SERVED_NAME

TIMEOUT = 60


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    jpeg = provenancegen.signed(imagegen.jpeg(seed=3, width=64, height=64), "image/jpeg")
    return {
        "signed jpeg": jpeg,
        "signed png": provenancegen.signed(imagegen.png(seed=4, width=64, height=64), "image/png"),
        "camera jpeg": provenancegen.signed(imagegen.jpeg(seed=5, width=64, height=64), "image/jpeg", "digitalCapture"),
        "tampered": provenancegen.tampered(jpeg),
        "malformed": provenancegen.malformed(jpeg),
        "remote": provenancegen.signed(imagegen.jpeg(seed=7, width=64, height=64), "image/jpeg", remote_url=REMOTE),
        "xmp": provenancegen.xmp_jpeg(),
        "parameters png": provenancegen.parameters_png(),
        "stripped": provenancegen.plain_jpeg(),
    }


REMOTE = "https://manifests.example.com/abc.c2pa"


@pytest.fixture(scope="module")
def untrusted() -> ProvenanceReader:
    return ProvenanceReader(ProvenanceSettings(enabled=True))


def test_a_signed_ai_declared_jpeg_and_png_are_valid_and_unverified_without_a_trust_list(untrusted, files):
    for name in ("signed jpeg", "signed png"):
        block = untrusted.read(files[name])
        manifest = block["c2pa"]
        assert (manifest["present"], manifest["validation_state"]) == (True, "Valid"), name
        assert manifest["trust"] == "unverified (no trust list configured)"
        assert manifest["signer"] == {"common_name": "Test Generator", "organization": "Test Studio"}
        assert manifest["claim_generator"] == "test-generator" and manifest["digital_source_types"] == ["trainedAlgorithmicMedia"]
        assert (block["declared_ai"], block["declared_by"]) == (True, "c2pa") and block["errors"] == []
        assert "declare this file AI-generated" in block["statement"] and "proves who signed" in block["statement"]


def test_a_configured_trust_list_makes_the_signer_trusted_and_another_root_untrusted(files):
    trusted = ProvenanceReader(ProvenanceSettings(True, provenancegen.chain().root_pem))
    assert trusted.read(files["signed jpeg"])["c2pa"]["trust"] == "trusted"
    stranger = ProvenanceReader(ProvenanceSettings(True, provenancegen.make_chain().root_pem))
    assert stranger.read(files["signed jpeg"])["c2pa"]["trust"] == "untrusted"


def test_a_camera_declaration_is_not_ai(untrusted, files):
    block = untrusted.read(files["camera jpeg"])
    assert (block["declared_ai"], block["declared_by"]) == (False, "c2pa") and "digitalCapture" in block["statement"]


def test_tampered_pixels_invalidate_the_credentials(untrusted, files):
    block = untrusted.read(files["tampered"])
    assert block["c2pa"]["validation_state"] == "Invalid" and "assertion.dataHash.mismatch" in block["c2pa"]["failures"]
    assert block["declared_ai"] is None and "do not validate" in block["statement"]


def test_a_malformed_manifest_is_present_and_unreadable_with_its_reason_never_absent(untrusted, files):
    block = untrusted.read(files["malformed"])
    assert (block["c2pa"]["present"], block["c2pa"]["state"]) == (True, "unreadable") and block["c2pa"]["reason"]
    assert block["declared_ai"] is None and block["errors"] == []
    assert "could not be read" in block["statement"] and block["c2pa"]["reason"] in block["statement"]
    assert "Absence proves nothing" not in block["statement"]


def test_a_remote_manifest_reference_names_its_url_and_is_not_fetched(untrusted, files):
    block = untrusted.read(files["remote"])
    assert block["c2pa"] == {"present": True, "state": "remote", "url": REMOTE, "fetched": False}
    assert REMOTE in block["statement"] and "not fetched" in block["statement"]
    assert "Absence proves nothing" not in block["statement"] and block["declared_ai"] is None


def test_unsigned_metadata_still_speaks_beside_an_unreadable_manifest(untrusted, files):
    jpeg = provenancegen.signed(provenancegen.xmp_jpeg(), "image/jpeg")
    block = untrusted.read(provenancegen.malformed(jpeg))
    assert block["c2pa"]["state"] == "unreadable"
    assert (block["declared_ai"], block["declared_by"]) == (True, "xmp") and "Unsigned XMP declares trainedAlgorithmicMedia" in block["statement"]


def test_unreadable_metadata_is_never_called_absence(untrusted):
    from handler.provenance import summarise

    found = summarise({"c2pa": {"present": False}, "xmp": None, "png": None, "errors": ["exif: ValueError: bad"]})
    assert "Absence proves nothing" not in found["statement"] and "exif: ValueError: bad" in found["statement"]


def test_xmp_and_png_generator_metadata_are_declarations_without_echoing_the_prompt(untrusted, files):
    xmp = untrusted.read(files["xmp"])
    assert (xmp["declared_ai"], xmp["declared_by"], xmp["xmp"]) == (True, "xmp", {"digital_source_type": "trainedAlgorithmicMedia"})
    png = untrusted.read(files["parameters png"])
    assert (png["declared_ai"], png["declared_by"]) == (True, "png") and png["png"]["chunks"] == ["parameters"]
    assert len(png["png"]["excerpt"]) <= 121 and png["png"]["length"] > 800  # a short excerpt of a long prompt


def test_a_stripped_file_says_absence_proves_nothing(untrusted, files):
    block = untrusted.read(files["stripped"])
    assert (block["c2pa"], block["declared_ai"], block["declared_by"]) == ({"present": False}, None, None)
    assert "Absence proves nothing" in block["statement"]


def test_the_verdict_is_the_same_with_and_without_provenance(tiny_checkpoint, files):
    on = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(provenance=True))
    off = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(provenance=False))
    payloads = [files["signed jpeg"], files["stripped"], b"not an image"]
    with_block, without = on.predict_batch(payloads), off.predict_batch(payloads)
    assert with_block[0]["provenance"]["declared_ai"] is True and without[0]["provenance"] is None
    for a, b in zip(with_block[:2], without[:2]):  # two model copies: equal but for float rounding
        assert (a["label"], a["verdict"]) == (b["label"], b["verdict"])
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)
    assert with_block[2].status == 415  # bad input is still the image's 4xx


def test_build_mar_packs_a_trust_list_from_the_checkpoint_folder(tiny_checkpoint, tmp_path):
    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "trust.pem").write_text(provenancegen.chain().root_pem)
    config = model_config(tmp_path / "mc.yaml", handler={"runtime": "torch", "precision": "fp32", "provenance_trust_list": "trust.pem"})
    mar = build_mar(folder, "trusting", "1.0", model_config=config, export_dir=tmp_path / "store")
    with zipfile.ZipFile(mar) as archive:
        assert archive.read("checkpoint/trust.pem").decode() == provenancegen.chain().root_pem
    trusting = DeepfakeClassifier.from_checkpoint(folder, HandlerOptions(provenance_trust_list="trust.pem"))
    signed = provenancegen.signed(imagegen.jpeg(seed=9, width=64, height=64), "image/jpeg")
    assert trusting.predict_batch([signed])[0]["provenance"]["c2pa"]["trust"] == "trusted"


def test_served_answers_carry_provenance_in_a_mixed_batch(server, files):
    names = ["signed jpeg", "tampered", "malformed", "stripped", "parameters png"]
    gate = threading.Barrier(len(names) + 1)

    def send(payload: bytes) -> requests.Response:
        gate.wait(timeout=TIMEOUT)
        return requests.post(f"{server.inference_url}/predictions/{SERVED_NAME}", data=payload, timeout=TIMEOUT,
                             headers={**server.headers(), "Content-Type": "application/octet-stream"})

    def send_all():
        with ThreadPoolExecutor(max_workers=len(names) + 1) as pool:
            return list(pool.map(send, [files[n] for n in names] + [b"not an image"]))

    answers = sent_together(server, send_all, lambda n, rejected: n - rejected > 1)  # two files' blocks in one batch
    assert [a.status_code for a in answers] == [200] * len(names) + [415]
    blocks = {name: answer.json()["provenance"] for name, answer in zip(names, answers)}
    assert blocks["signed jpeg"]["declared_ai"] is True and blocks["signed jpeg"]["c2pa"]["validation_state"] == "Valid"
    assert blocks["tampered"]["c2pa"]["validation_state"] == "Invalid"
    assert blocks["malformed"]["c2pa"]["state"] == "unreadable" and "could not be read" in blocks["malformed"]["statement"]
    assert blocks["stripped"]["declared_ai"] is None and blocks["parameters png"]["declared_by"] == "png"


def test_score_writes_the_declaration_and_evaluate_counts_agreement(tiny_checkpoint, files, tmp_path):
    import csv

    from deepfake_service.dataset import image_files, labelled_samples
    from deepfake_service.training.checkpoint_predictor import CheckpointPredictor
    from deepfake_service.training.evaluate import evaluate
    from deepfake_service.training.score import score

    for label, name, key in (("synthetic", "signed.jpg", "signed jpeg"), ("authentic", "camera.jpg", "camera jpeg"),
                             ("unsure", "plain.jpg", "stripped")):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / name).write_bytes(files[key])
    predictor = CheckpointPredictor(tiny_checkpoint, HandlerOptions(fake_label="synthetic"), face_mode="off")
    report = evaluate(predictor, labelled_samples(tmp_path / "data"), progress=False).report
    assert report["provenance"]["declared"] == 2 and report["provenance"]["declared_ai"] == 1
    assert report["provenance"]["agrees_with_label"] == 1.0 and 0 <= report["provenance"]["agrees_with_model"] <= 1
    score(predictor, image_files(tmp_path / "data"), tmp_path / "scores.csv", progress=False)
    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = {row["path"].rsplit("/", 1)[-1]: row for row in csv.DictReader(handle)}
    assert (rows["signed.jpg"]["declared_ai"], rows["signed.jpg"]["declared_by"], rows["signed.jpg"]["signer"]) == ("true", "c2pa", "Test Generator")
    assert rows["camera.jpg"]["declared_ai"] == "false" and rows["plain.jpg"]["declared_ai"] == ""


@pytest.mark.parametrize("mime", ["image/avif", "image/heic"])
def test_content_credentials_in_avif_and_heic_are_read_and_the_photo_decodes(untrusted, mime):
    from handler.images import ImageLimits, decode_image

    photo = imagegen.pattern(64, 48, seed=6)
    signed = provenancegen.signed(imagegen.avif(photo) if mime == "image/avif" else imagegen.heic(photo), mime)
    block = untrusted.read(signed)
    assert (block["c2pa"]["present"], block["c2pa"]["validation_state"], block["declared_ai"]) == (True, "Valid", True)
    assert decode_image(signed, ImageLimits(max_bytes=10**7, max_pixels=10**7)).size == (64, 48)
