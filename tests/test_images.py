"""decode_image: every accepted format and mode becomes RGB; every bad input gets its own error."""

from __future__ import annotations

import pytest
from PIL import Image

from deepfake_service.samples import imagegen
from handler.answers import error_body
from handler.errors import CorruptImage, EmptyInput, ImageTooLarge, PayloadTooLarge, UnsupportedMediaType
from handler.images import ImageLimits, decode_image

LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=1_000_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_accepted_formats_decode_to_rgb(fmt):
    image = decode_image(imagegen.encode(imagegen.pattern(), fmt), LIMITS)
    assert image.mode == "RGB"
    assert image.size == (48, 40)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I", "F"])
def test_pillow_modes_become_rgb(mode):
    source = imagegen.pattern().convert(mode)
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    assert decode_image(imagegen.encode(source, fmt), LIMITS).mode == "RGB"


def test_sixteen_bit_grey_is_scaled_not_saturated():
    mid = decode_image(imagegen.sixteen_bit_png(32896), LIMITS)  # 32896 / 257 = 128
    assert mid.getpixel((0, 0)) == (128, 128, 128)
    assert decode_image(imagegen.sixteen_bit_png(65535), LIMITS).getpixel((0, 0)) == (255, 255, 255)


def test_transparent_pixels_become_white():
    clear = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    assert decode_image(imagegen.encode(clear, "PNG"), LIMITS).getpixel((3, 3)) == (255, 255, 255)


def test_palette_transparency_becomes_white():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([10, 20, 30] * 256)
    assert decode_image(imagegen.encode(palette, "PNG", transparency=0), LIMITS).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = decode_image(imagegen.exif_rotated_jpeg(width=40, height=20, orientation=6), LIMITS)
    assert image.size == (20, 40)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_first_frame(fmt):
    red, green, blue = decode_image(imagegen.animated(fmt), LIMITS).getpixel((8, 8))
    assert red > 200 and blue < 50


def test_empty_body_is_rejected():
    with pytest.raises(EmptyInput):
        decode_image(b"", LIMITS)


@pytest.mark.parametrize("data", [b"hello, world", b"<html><body>hi</body></html>", b'{"image": 1}', b"PK\x03\x04" + bytes(40)])
def test_non_images_are_unsupported_media(data):
    with pytest.raises(UnsupportedMediaType) as caught:
        decode_image(data, LIMITS)
    assert "JPEG" in caught.value.detail


def test_truncated_jpeg_is_corrupt():
    with pytest.raises(CorruptImage):
        decode_image(imagegen.jpeg()[:200], LIMITS)


def test_decompression_bomb_header_is_rejected_before_decoding():
    with pytest.raises(ImageTooLarge):
        decode_image(imagegen.png_header(100_000, 100_000), ImageLimits(max_bytes=10**6, max_pixels=36_000_000))


def test_pixel_cap_is_enforced():
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(imagegen.png(width=200, height=100), ImageLimits(max_bytes=10**6, max_pixels=19_999))
    assert "200x100" in caught.value.detail


def test_byte_cap_is_enforced():
    data = imagegen.png()
    with pytest.raises(PayloadTooLarge):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1, max_pixels=10**6))


def test_errors_serialise_as_json_with_detail():
    with pytest.raises(EmptyInput) as caught:
        decode_image(b"", LIMITS)
    assert caught.value.status == 400
    assert error_body(caught.value)["error"] == "empty input"
    assert caught.value.detail.startswith("the request carried no bytes")


def test_jpeg_draft_keeps_the_shorter_side_at_least_the_draft_side():
    data = imagegen.jpeg(width=1600, height=1200)
    full = decode_image(data, ImageLimits(max_bytes=10**7, max_pixels=10**7))
    drafted = decode_image(data, ImageLimits(max_bytes=10**7, max_pixels=10**7, jpeg_draft_side=280))
    assert full.size == (1600, 1200)
    assert drafted.size == (400, 300)  # 1/4 scale: the largest reduction keeping 300 >= 280


def test_jpeg_draft_leaves_small_and_non_jpeg_images_alone():
    limits = ImageLimits(max_bytes=10**7, max_pixels=10**7, jpeg_draft_side=280)
    assert decode_image(imagegen.jpeg(width=300, height=200), limits).size == (300, 200)
    assert decode_image(imagegen.png(width=1600, height=1200), limits).size == (1600, 1200)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from skimage import data as photos

    return Image.fromarray(photos.astronaut()).resize((96, 64))


def _close(decoded: Image.Image, source: Image.Image, tolerance: float = 12.0) -> bool:
    import numpy as np

    return float(np.abs(np.asarray(decoded, dtype=float) - np.asarray(source, dtype=float)).mean()) < tolerance


@pytest.mark.parametrize("encode", [imagegen.avif, imagegen.heic], ids=["avif", "heic"])
def test_avif_and_heic_photos_round_trip(photo, encode):
    data = encode(photo)
    image = decode_image(data, LIMITS)
    assert (image.mode, image.size) == ("RGB", photo.size) and _close(image, photo)


@pytest.mark.parametrize("bits", [10, 12])
def test_high_bit_depth_heic_is_scaled_to_eight_bits_not_clipped(photo, bits):
    image = decode_image(imagegen.heic(photo, quality=95, bit_depth=bits), LIMITS)
    assert image.mode == "RGB" and _close(image, photo)


@pytest.mark.parametrize("encode", [imagegen.avif, imagegen.heic], ids=["avif", "heic"])
def test_avif_and_heic_exif_orientation_is_applied(encode):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    assert decode_image(encode(imagegen.pattern(40, 20), exif=exif.tobytes()), LIMITS).size == (20, 40)


def test_a_heic_sequence_gives_its_first_picture():
    red, _, blue = decode_image(imagegen.heic_sequence(), LIMITS).getpixel((8, 8))
    assert red > 200 and blue < 50


@pytest.mark.parametrize("encode", [imagegen.avif, imagegen.heic], ids=["avif", "heic"])
def test_avif_and_heic_are_under_the_same_caps_and_a_cut_file_is_corrupt(photo, encode):
    data = encode(photo)
    with pytest.raises(ImageTooLarge):
        decode_image(data, ImageLimits(max_bytes=1_000_000, max_pixels=96 * 64 - 1))
    with pytest.raises(PayloadTooLarge):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1, max_pixels=1_000_000))
    with pytest.raises(CorruptImage):
        decode_image(data[:40], LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP"])
def test_header_only_file_of_an_accepted_format_is_corrupt_not_unsupported(fmt):
    data = imagegen.encode(imagegen.pattern(), fmt)
    with pytest.raises(CorruptImage, match="truncated or damaged"):
        decode_image(data[:16], LIMITS)
