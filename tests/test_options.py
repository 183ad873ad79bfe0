"""HandlerOptions: the handler section of model-config.yaml is validated once, loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from handler.options import HandlerOptions, OptionsError

MODEL_CONFIG = Path(__file__).resolve().parent.parent / "config" / "model-config.yaml"
# The handler keys where the served config/model-config.yaml deliberately departs from HandlerOptions' defaults.
# The defaults must run any checkpoint folder for a library user (tests, benches) as it is; the service serves
# what it measured best. Every other key of the shipped handler section equals its default.
SERVED_OVERRIDES = {
    "runtime",  # auto: the fastest runtime the archive carries, probed per worker; default torch runs any folder
    "precision",  # auto, as runtime; default fp32
    "jpeg_draft_side",  # 448: cheaper decodes of large JPEGs; default 0 decodes in full, bit-exact
    "face_mode",  # auto: classify faces first; default off classifies the whole image
    "face_detector",  # blazeface needs its .tflite file beside the checkpoint; default haar needs none
}


def test_shipped_model_config_is_valid():
    section = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    options = HandlerOptions.from_mapping(section)
    assert options.limits.max_pixels == section["max_image_pixels"]


def test_shipped_model_config_departs_from_the_defaults_only_where_listed():
    section = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    defaults = HandlerOptions()
    differing = {key for key, value in section.items() if getattr(defaults, key) != value}
    assert differing == SERVED_OVERRIDES, "change the default or list the key in SERVED_OVERRIDES, with why"


def test_missing_section_gives_defaults():
    assert HandlerOptions.from_mapping(None) == HandlerOptions()


def test_unknown_option_is_named():
    with pytest.raises(OptionsError, match="max_pixels"):
        HandlerOptions.from_mapping({"max_pixels": 5})


@pytest.mark.parametrize("value", ["10", 1.5, True, 0, -3])
def test_wrong_type_or_non_positive_is_rejected(value):
    with pytest.raises(OptionsError, match="max_image_bytes"):
        HandlerOptions.from_mapping({"max_image_bytes": value})
