"""image_bytes: the accepted request fields, and errors for everything else."""

from __future__ import annotations

import pytest

from handler.errors import MissingImage, UnsupportedMediaType
from handler.payload import IMAGE_FIELDS, image_bytes


@pytest.mark.parametrize("field", IMAGE_FIELDS)
def test_each_accepted_field_yields_bytes(field):
    assert image_bytes({field: bytearray(b"abc")}) == b"abc"


def test_first_accepted_field_wins():
    assert image_bytes({"image": b"second", "data": b"first"}) == b"first"


def test_unknown_fields_name_what_was_sent():
    with pytest.raises(MissingImage) as caught:
        image_bytes({"picture": b"abc"})
    assert "picture" in caught.value.detail and "data, file or image" in caught.value.detail


@pytest.mark.parametrize("value,kind", [({"b64": "..."}, "JSON"), ([1, 2], "JSON"), ("some text", "text")])
def test_decoded_json_or_text_is_not_an_image(value, kind):
    with pytest.raises(UnsupportedMediaType) as caught:
        image_bytes({"body": value})
    assert kind in caught.value.detail
