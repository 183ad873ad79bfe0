"""Face sets with known boxes, built from scikit-image's public-domain photos: how the face stage is judged.

Each case is an image and the boxes of the faces in it (empty for face-free photos). The faces are the
astronaut's (her face is ``ASTRONAUT_FACE`` in the 512x512 photo) pasted, scaled, mirrored, rotated,
darkened and re-compressed the way users' photos and frames look.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageEnhance

from handler.geometry import Box

ASTRONAUT_FACE = Box(177, 66, 95, 95)  # the one face in skimage.data.astronaut(), 512 x 512
BACKGROUND = (70, 80, 90)
FACE_FREE = ("coffee", "chelsea", "rocket", "hubble_deep_field", "coins", "horse")


@dataclass(frozen=True)
class FaceCase:
    name: str
    kind: str  # rotated, small, group, dark, large, crop, face-free
    image: Image.Image
    faces: tuple[Box, ...]


def astronaut() -> Image.Image:
    from skimage import data as photos

    return Image.fromarray(photos.astronaut())


def _pasted(canvas: Image.Image, side: int, at: tuple[int, int], mirror: bool = False) -> Box:
    """Paste the astronaut scaled to ``side`` at ``at``; returns her face's box in the canvas."""
    person = astronaut().resize((side, side), Image.Resampling.BICUBIC)
    face = ASTRONAUT_FACE.scaled(side / 512, side / 512)
    if mirror:
        person = person.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        face = Box(side - face.x - face.w, face.y, face.w, face.h)
    canvas.paste(person, at)
    return Box(face.x + at[0], face.y + at[1], face.w, face.h)


def _rotated(degrees: float) -> FaceCase:
    """The astronaut turned ``degrees`` counterclockwise (canvas expanded); the face box follows its centre."""
    photo = astronaut()
    turned = photo.rotate(degrees, expand=True, fillcolor=BACKGROUND, resample=Image.Resampling.BICUBIC)
    cx, cy = ASTRONAUT_FACE.x + ASTRONAUT_FACE.w / 2 - 256, ASTRONAUT_FACE.y + ASTRONAUT_FACE.h / 2 - 256
    angle = math.radians(degrees)
    x = cx * math.cos(angle) + cy * math.sin(angle) + turned.width / 2
    y = -cx * math.sin(angle) + cy * math.cos(angle) + turned.height / 2
    side = ASTRONAUT_FACE.w
    return FaceCase(f"rotated {degrees:+g} deg", "rotated", turned, (Box(round(x - side / 2), round(y - side / 2), side, side),))


def _canvas(size: tuple[int, int], people: list[tuple[int, tuple[int, int]]], name: str, kind: str) -> FaceCase:
    canvas = Image.new("RGB", size, BACKGROUND)
    boxes = tuple(_pasted(canvas, side, at, mirror=i % 2 == 1) for i, (side, at) in enumerate(people))
    return FaceCase(name, kind, canvas, boxes)


def faces_in_frame(size: tuple[int, int], faces: list[tuple[int, tuple[int, int]]], name: str, kind: str = "large") -> FaceCase:
    """A ``size`` frame with one astronaut per (face width in pixels, top-left of the pasted picture)."""
    return _canvas(size, [(round(face * 512 / ASTRONAUT_FACE.w), at) for face, at in faces], name, kind)


def _face_crop(margin: float, side: int, name: str) -> FaceCase:
    """The astronaut's face with ``margin`` times its side around it, scaled to ``side`` pixels square: a
    face crop as the model was trained on (margin 0.2) or a close-up whose face fills the picture."""
    grow = round(ASTRONAUT_FACE.w * margin)
    region = (ASTRONAUT_FACE.x - grow, ASTRONAUT_FACE.y - grow, ASTRONAUT_FACE.x + ASTRONAUT_FACE.w + grow,
              ASTRONAUT_FACE.y + ASTRONAUT_FACE.h + grow)
    scale = side / (region[2] - region[0])
    crop = astronaut().crop(region).resize((side, side), Image.Resampling.BICUBIC)
    return FaceCase(name, "crop", crop, (Box(round(grow * scale), round(grow * scale), round(ASTRONAUT_FACE.w * scale),
                                              round(ASTRONAUT_FACE.h * scale)),))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def face_cases() -> list[FaceCase]:
    """Rotations of +-25 and +-30 deg, three ~48-px faces in 1600x900, a six-person 1920x1080 group
    (faces 48-82 px), two faces in a 4K frame (~45 and ~180 px), a dark quality-35 JPEG, a 40-px face in a
    small photo, a face crop and a close-up whose face fills the picture, and six face-free photos."""
    from skimage import data as photos

    cases = [_rotated(d) for d in (25, -25, 30, -30)]
    cases.append(_canvas((1600, 900), [(256, (100 + 600 * i, 300)) for i in range(3)], "three 48-px faces in 1600x900", "small"))
    group = [(260, (50, 100)), (300, (500, 120)), (360, (950, 80)), (440, (1400, 150)), (320, (200, 600)), (400, (900, 620))]
    cases.append(_canvas((1920, 1080), group, "six people in 1920x1080 (faces 48-82 px)", "group"))
    cases.append(_canvas((3840, 2160), [(240, (400, 900)), (960, (2400, 500))], "two faces in a 4K frame (45, 178 px)", "large"))
    cases.append(_canvas((480, 360), [(216, (130, 60))], "a 40-px face in 480x360", "small"))
    dark = _jpeg(ImageEnhance.Brightness(astronaut()).enhance(0.35), 35)
    cases.append(FaceCase("dark, JPEG quality 35", "dark", dark, (ASTRONAUT_FACE,)))
    cases.append(_face_crop(0.2, 256, "a 256-px face crop (margin 0.2, as trained)"))
    cases.append(_face_crop(0.05, 600, "a close-up, the face 91 % of 600x600"))
    cases += [FaceCase(name, "face-free", Image.fromarray(getattr(photos, name)()).convert("RGB"), ()) for name in FACE_FREE]
    return cases


SWEEP_FACES = (40, 48, 56, 64, 80, 96, 120, 150, 190, 240, 300, 400)
SWEEP_FRAMES = ((1280, 720), (1920, 1080), (1024, 768))


def sweep_case(face: int, k: int) -> FaceCase:
    """A frame with one face of ``face`` pixels at a seeded random place (seeded by size and ``k``, so
    some faces straddle the edges of a level's pieces): 720p, 1080p or 1024x768 by ``k``, or, when the person
    does not fit, a frame 200 px wider and 100 px taller than the person."""
    import random

    side = round(face * 512 / ASTRONAUT_FACE.w)
    width, height = SWEEP_FRAMES[k % len(SWEEP_FRAMES)]
    if side > min(width, height):
        width, height = side + 200, side + 100
    places = random.Random(f"sweep {face} {k}")
    at = (places.randrange(0, width - side + 1), places.randrange(0, height - side + 1))
    return _canvas((width, height), [(side, at)], f"a {face}-px face in {width}x{height} #{k + 1}", "sweep")


def size_sweep(per_size: int = 3) -> list[FaceCase]:
    """``sweep_case`` for every size of ``SWEEP_FACES``, ``per_size`` frames each."""
    return [sweep_case(face, k) for face in SWEEP_FACES for k in range(per_size)]


def matched(found: list[Box], expected: tuple[Box, ...], threshold: float = 0.3) -> tuple[int, int]:
    """(expected faces found, boxes that match no expected face): a found box matches a face when their
    IoU is at least ``threshold``; each face and each box counts once."""
    used: set[int] = set()
    hits = 0
    for face in expected:
        best = max(((box.iou(face), i) for i, box in enumerate(found) if i not in used), default=(0.0, -1))
        if best[0] >= threshold:
            used.add(best[1])
            hits += 1
    return hits, len(found) - len(used)
