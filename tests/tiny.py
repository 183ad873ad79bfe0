"""The tiny ViT the tests build (seconds on CPU) and the names the shared test server serves it under."""

from __future__ import annotations

from deepfake_service.packaging.demo import seed_config

# Labels deliberately not Real/Fake and not in that order: they must come from config.id2label.
TINY_LABELS = {0: "synthetic", 1: "authentic", 2: "unsure"}
SERVED_NAME, SERVED_VERSION = "tiny-detector", "2.5"


def tiny_config(**overrides):
    """A ViT small enough to run in milliseconds, built like transformers' own ViT tests."""
    settings = dict(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        id2label=TINY_LABELS,
    )
    settings.update(overrides)
    return seed_config(**settings)
