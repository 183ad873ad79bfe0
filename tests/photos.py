"""Known faces in scikit-image's public-domain photos, for tests that check where faces were found."""

from __future__ import annotations

from PIL import Image
from skimage import data as photos

from deepfake_service.samples.faceset import ASTRONAUT_FACE
from deepfake_service.samples.imagegen import photo_jpeg
from handler.geometry import Box

# The astronaut's mirror image pasted to her right (a 1024 x 512 pair).
MIRRORED_FACE = Box(1024 - ASTRONAUT_FACE.x - ASTRONAUT_FACE.w, ASTRONAUT_FACE.y, ASTRONAUT_FACE.w, ASTRONAUT_FACE.h)


def as_box(values) -> Box:
    """An answer's ``[x, y, w, h]`` as a Box."""
    return Box(*values)


def astronaut(scale: float = 1.0, quality: int = 92) -> bytes:
    """The astronaut photo as a JPEG, ``scale``d and at ``quality``."""
    image = Image.fromarray(photos.astronaut())
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return photo_jpeg(image, quality)
