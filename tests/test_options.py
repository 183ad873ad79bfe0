"""HandlerOptions: the handler section of model-config.yaml is validated once, loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from handler.options import HandlerOptions, OptionsError

MODEL_CONFIG = Path(__file__).resolve().parent.parent / "config" / "model-config.yaml"


def test_shipped_model_config_is_valid():
    section = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    options = HandlerOptions.from_mapping(section)
    assert options.limits.max_pixels == section["max_image_pixels"]


def test_missing_section_gives_defaults():
    assert HandlerOptions.from_mapping(None) == HandlerOptions()


def test_unknown_option_is_named():
    with pytest.raises(OptionsError, match="max_pixels"):
        HandlerOptions.from_mapping({"max_pixels": 5})


@pytest.mark.parametrize("value", ["10", 1.5, True, 0, -3])
def test_wrong_type_or_non_positive_is_rejected(value):
    with pytest.raises(OptionsError, match="max_image_bytes"):
        HandlerOptions.from_mapping({"max_image_bytes": value})
