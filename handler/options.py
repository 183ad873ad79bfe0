"""Handler options: the ``handler:`` section of ``model-config.yaml``, validated once at load."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from handler.images import ImageLimits


class OptionsError(Exception):
    """``model-config.yaml``'s handler section names an unknown option or a wrong type."""


@dataclass(frozen=True)
class HandlerOptions:
    """Defaults here apply only to keys the handler section leaves out (torch fp32 runs any archive);
    the shipped choices are in config/model-config.yaml."""

    checkpoint: str = "checkpoint"
    runtime: str = "torch"
    precision: str = "fp32"
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 36_000_000
    # JPEG decode may shrink by 1/2..1/8 while the shorter side stays >= this; 0 decodes in full.
    jpeg_draft_side: int = field(default=0, metadata={"min": 0})
    # Inference threads per worker; 0 leaves the runtime's default (all cores).
    threads: int = field(default=0, metadata={"min": 0})

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> "HandlerOptions":
        """Validate keys and types; raises ``OptionsError`` naming the offending key."""
        section = dict(section or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise OptionsError(f"unknown handler option(s) {unknown}; known: {sorted(known)}")
        for key, value in section.items():
            expected = type(getattr(cls, key))
            if type(value) is not expected:
                raise OptionsError(f"handler option {key!r} must be {expected.__name__}, got {value!r}")
            least = known[key].metadata.get("min", 1)
            if expected is int and value < least:
                raise OptionsError(f"handler option {key!r} must be at least {least}, got {value}")
        return cls(**section)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_bytes, self.max_image_pixels, self.jpeg_draft_side)
