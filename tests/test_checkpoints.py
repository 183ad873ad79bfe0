"""The demo checkpoint recipe: the seed's ViT-B/16 config, deterministic weights, the demo mark."""

from __future__ import annotations

from deepfake_service.packaging.demo import seed_config, seed_processor, write_random_checkpoint
from handler.checkpoint import is_demo, read_checkpoint_info
from tests.tiny import tiny_config


def test_demo_config_is_the_seeds_vit_b16():
    config = seed_config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.patch_size, config.image_size, config.intermediate_size) == (16, 224, 3072)
    assert config.id2label == {0: "Real", 1: "Fake"}


def test_demo_preprocessing_is_the_seeds():
    processor = seed_processor()
    assert processor.size == {"height": 224, "width": 224}
    assert list(processor.image_mean) == [0.5, 0.5, 0.5] and list(processor.image_std) == [0.5, 0.5, 0.5]


def test_same_seed_writes_identical_files(tmp_path):
    first = write_random_checkpoint(tmp_path / "a", tiny_config(), seed=7, demo=True)
    second = write_random_checkpoint(tmp_path / "b", tiny_config(), seed=7, demo=True)
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_other_seed_writes_other_weights(tmp_path):
    first = write_random_checkpoint(tmp_path / "a", tiny_config(), seed=7, demo=True)
    second = write_random_checkpoint(tmp_path / "b", tiny_config(), seed=8, demo=True)
    assert (first / "model.safetensors").read_bytes() != (second / "model.safetensors").read_bytes()


def test_demo_mark_is_read_back(tiny_checkpoint, tiny_demo_checkpoint):
    assert is_demo(tiny_demo_checkpoint / "model.safetensors")
    assert not read_checkpoint_info(tiny_checkpoint).demo
