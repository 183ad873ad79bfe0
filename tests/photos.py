"""Known faces in scikit-image's public-domain photos, for tests that check where faces were found."""

from __future__ import annotations

from deepfake_service.samples.faceset import ASTRONAUT_FACE
from handler.geometry import Box

# The astronaut's mirror image pasted to her right (a 1024 x 512 pair).
MIRRORED_FACE = Box(1024 - ASTRONAUT_FACE.x - ASTRONAUT_FACE.w, ASTRONAUT_FACE.y, ASTRONAUT_FACE.w, ASTRONAUT_FACE.h)


def as_box(values) -> Box:
    """An answer's ``[x, y, w, h]`` as a Box."""
    return Box(*values)
