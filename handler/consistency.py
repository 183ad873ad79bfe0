"""The opt-in delivery-consistency check (handler option ``consistency_check``): each image's crops are
also classified as one re-encoded copy (JPEG at ``consistency_quality``, at the model's input size, as a
re-shared file would arrive), and an image whose deciding crop gets another verdict on that copy is
answered ``uncertain``: a verdict that a plain re-save changes should not be acted on. Which media
kinds are checked is each kind's ``rechecks`` (videos are not: their verdicts already aggregate many frames)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from handler.verdicts import Recheck, Verdict


@dataclass(frozen=True)
class Consistency:
    quality: int = 75
    side: int = 224

    def copy(self, crop: Image.Image) -> Image.Image:
        """``crop`` at the model's input size, saved as JPEG at ``quality`` and decoded again."""
        buffer = io.BytesIO()
        crop.convert("RGB").resize((self.side, self.side), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=self.quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    @staticmethod
    def check(original: Verdict, again: Verdict) -> Recheck:
        """The deciding crop's two verdicts, as the outcome keeps them."""
        return Recheck(again, original.verdict == again.verdict)
