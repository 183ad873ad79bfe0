"""The opt-in delivery-consistency check (handler option ``consistency_check``): each image's crops are
also classified as one re-encoded copy (JPEG at ``consistency_quality``, at the model's input size, as a
re-shared file would arrive), and an image whose deciding crop gets another verdict on that copy is
answered ``uncertain``: a verdict that a plain re-save changes should not be acted on. Videos are not
checked (their verdicts already aggregate many frames)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from handler.verdicts import Verdict


@dataclass(frozen=True)
class Consistency:
    quality: int = 75
    side: int = 224

    def copy(self, crop: Image.Image) -> Image.Image:
        """``crop`` at the model's input size, saved as JPEG at ``quality`` and decoded again."""
        buffer = io.BytesIO()
        crop.convert("RGB").resize((self.side, self.side), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=self.quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    def block(self, original: Verdict, again: Verdict) -> dict:
        """The answer's ``consistency`` block for the deciding crop's two verdicts."""
        agrees = original.verdict == again.verdict
        block = {"agrees": agrees, "reencoded": f"JPEG q{self.quality} at {self.side} px",
                 "verdict": again.verdict, "probabilities": again.probabilities}
        if not agrees:
            block["reason"] = (f"the verdict moved from {original.verdict} to {again.verdict} when the image was re-encoded "
                               f"(JPEG q{self.quality} at {self.side} px): it depends on how the file was delivered, so it is "
                               "answered uncertain")
        return block
