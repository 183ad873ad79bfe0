"""Provenance: what a file says about itself, reported beside the model's verdict and never changing it.

Read from the original bytes, before any decoding: C2PA content credentials (c2pa-python; validation
state, signer, trust, claim generator, the actions' IPTC digital source types, ingredients), the XMP
``Iptc4xmpExt:DigitalSourceType``, EXIF ``Software``/``Make``/``Model``, and the generation-parameter text
chunks PNG generators write (Stable Diffusion web UIs: ``parameters``; ComfyUI: ``prompt``/``workflow``),
of which only the tool's name and a short excerpt are returned, never a whole prompt.

Everything here is untrusted input: every reader is capped and any failure becomes an entry in
``errors`` on a normal answer; a C2PA manifest that is there but cannot be read, or is stored remotely, is
said so in its own block and in the statement. Nothing is fetched over the network: remote manifests and OCSP are off,
and trust is checked only against the operator's PEM trust list (``provenance_trust_list``); without one
the signer is reported as unverified.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/<term>).
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                             "compositeSynthetic", "algorithmicallyEnhanced"})
CAPTURE_SOURCE_TYPES = frozenset({"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print",
                                  "digitalArt", "minorHumanEdits"})
READERS = ("c2pa", "xmp", "exif", "png")  # every reader; a media kind names those that apply to it
EXCERPT = 120  # characters of a generation-parameter chunk echoed back
TEXT_CAP = 200  # characters of any other string read from the file
XMP_SCAN = 4 * 1024 * 1024  # bytes searched for an XMP packet
XMP_SOURCE = re.compile(rb"Iptc4xmpExt:DigitalSourceType(?:=\"|>|\s+rdf:resource=\")([^\"<]{1,300})")
# Where a file whose C2PA manifest is stored elsewhere says it is (XMP dcterms:provenance).
XMP_PROVENANCE = re.compile(rb"dcterms:provenance(?:=\"|>)([^\"<]{1,2000})")
PNG_GENERATORS = {"parameters": "Stable Diffusion web UI (parameters chunk)", "prompt": "ComfyUI (prompt chunk)",
                  "workflow": "ComfyUI (workflow chunk)", "sd-metadata": "InvokeAI (sd-metadata chunk)",
                  "invokeai_metadata": "InvokeAI (invokeai_metadata chunk)"}


@dataclass(frozen=True)
class ProvenanceSettings:
    """``enabled``: read provenance at all; ``trust_pem``: the operator's trust anchors (PEM), or None."""

    enabled: bool
    trust_pem: str | None = None


def load_trust_list(name: str, checkpoint: Path) -> str | None:
    """The PEM text of ``provenance_trust_list`` (an absolute path, or a file in the checkpoint folder); None
    for no list. Raises ``OSError``/``ValueError`` for a list that is named but unusable."""
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else checkpoint / name
    text = path.read_text()
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"provenance trust list {path} holds no PEM certificate")
    return text


def _short(value: Any, cap: int = TEXT_CAP) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= cap else text[:cap] + "…"


def _term(uri: str) -> str:
    """The IPTC term of a digital source type given as a URI or a bare term."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


class ProvenanceReader:
    """Reads the provenance block of one file; the C2PA context is built once per worker."""

    def __init__(self, settings: ProvenanceSettings) -> None:
        self.settings = settings
        self._context = None

    def _c2pa_context(self):
        if self._context is None:
            import c2pa

            verify = {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": self.settings.trust_pem is not None}
            config: dict[str, Any] = {"verify": verify}
            if self.settings.trust_pem is not None:
                config["trust"] = {"trust_anchors": self.settings.trust_pem}
            self._context = c2pa.Context.from_dict(config)
        return self._context

    def read(self, payload: bytes, readers: Sequence[str] = READERS) -> dict[str, Any]:
        """The provenance block of one file from the ``readers`` that apply to its media kind (its cost:
        ``make bench-provenance``)."""
        block: dict[str, Any] = {"c2pa": None, "xmp": None, "exif": None, "png": None, "errors": []}
        for name, reader in (("c2pa", self._c2pa), ("xmp", _xmp), ("exif", _exif), ("png", _png)):
            if name not in readers:
                continue
            try:
                block[name] = reader(payload)
            except Exception as exc:  # noqa: BLE001 - untrusted metadata: a reader's failure is reported, never raised
                block["errors"].append(f"{name}: {type(exc).__name__}: {_short(exc)}")
        block.update(summarise(block))
        return block

    def _c2pa(self, payload: bytes) -> dict[str, Any]:
        """The C2PA block: ``present`` False (none), None (format not readable by C2PA), or True with
        ``state`` ``read`` (the manifest's fields), ``remote`` (the file points to a manifest stored at
        ``url``, not fetched) or ``unreadable`` (a manifest is there but could not be read: ``reason``)."""
        import c2pa

        try:
            with c2pa.Reader(None, io.BytesIO(payload), context=self._c2pa_context()) as reader:
                data = json.loads(reader.json())
        except c2pa.C2paError as exc:
            kind = type(exc).__name__
            if "ManifestNotFound" in kind:
                return {"present": False}
            if "NotSupported" in kind:
                return {"present": None, "note": "format not supported by the C2PA reader"}
            if "RemoteManifest" in kind or str(exc).startswith("Remote:"):  # c2pa-python 0.38 raises the base class
                return {"present": True, "state": "remote", "url": _remote_url(payload), "fetched": False}
            return {"present": True, "state": "unreadable", "reason": f"{kind.strip('_')}: {_short(exc)}"}
        active = data.get("manifests", {}).get(data.get("active_manifest"), {})
        results = (data.get("validation_results") or {}).get("activeManifest") or {}
        codes = {kind: [entry.get("code") for entry in results.get(kind) or []] for kind in ("success", "failure")}
        trust = "unverified (no trust list configured)"
        if self.settings.trust_pem is not None:
            trust = "trusted" if "signingCredential.trusted" in codes["success"] else "untrusted"
        signature = active.get("signature_info") or {}
        generator = active.get("claim_generator") or next(
            (g.get("name") for g in active.get("claim_generator_info") or [] if isinstance(g, dict)), None)
        sources = []
        for assertion in active.get("assertions") or []:
            if str(assertion.get("label", "")).startswith("c2pa.actions"):
                for action in (assertion.get("data") or {}).get("actions") or []:
                    if action.get("digitalSourceType"):
                        sources.append(_term(str(action["digitalSourceType"])))
        return {
            "present": True,
            "state": "read",
            "validation_state": data.get("validation_state"),
            "trust": trust,
            "signer": {"common_name": _short(signature.get("common_name")), "organization": _short(signature.get("issuer"))},
            "signed_at": _short(signature.get("time")),
            "claim_generator": _short(generator),
            "digital_source_types": sorted(set(sources)),
            "ingredients": len(active.get("ingredients") or []),
            "failures": [c for c in codes["failure"] if c != "signingCredential.untrusted" or self.settings.trust_pem is not None],
        }


def _remote_url(payload: bytes) -> str | None:
    """The URL a file gives for its remote C2PA manifest (XMP ``dcterms:provenance``), if it gives one."""
    found = XMP_PROVENANCE.search(payload[:XMP_SCAN])
    return _short(found.group(1).decode("utf-8", "replace"), 500) if found else None


def _xmp(payload: bytes) -> dict[str, Any] | None:
    found = XMP_SOURCE.search(payload[:XMP_SCAN])
    if found is None:
        return None
    return {"digital_source_type": _term(found.group(1).decode("utf-8", "replace"))}


def _exif(payload: bytes) -> dict[str, Any] | None:
    from PIL import Image

    with Image.open(io.BytesIO(payload)) as image:  # headers only: no pixel is decoded
        exif = image.getexif()
    fields = {"software": exif.get(0x0131), "make": exif.get(0x010F), "model": exif.get(0x0110)}
    fields = {k: _short(v) for k, v in fields.items() if v}
    return fields or None


def _png(payload: bytes) -> dict[str, Any] | None:
    if not payload.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    from PIL import Image

    with Image.open(io.BytesIO(payload)) as image:  # text chunks before the pixels; Pillow caps their size
        info = dict(image.info)
    chunks = [key for key in PNG_GENERATORS if key in info]
    if not chunks:
        return None
    text = str(info[chunks[0]])
    return {"generator": PNG_GENERATORS[chunks[0]], "chunks": chunks,
            "excerpt": text[:EXCERPT] + ("…" if len(text) > EXCERPT else ""), "length": len(text)}


def summarise(block: dict[str, Any]) -> dict[str, Any]:
    """``declared_ai`` (True, False or None), the field it came from, and one sentence for people."""
    manifest, xmp, png = block.get("c2pa") or {}, block.get("xmp") or {}, block.get("png")
    elsewhere = _unsigned(xmp, png)
    if manifest.get("state") == "remote":
        return {**_declared(xmp, png), "statement":
                f"The file points to content credentials stored elsewhere ({manifest.get('url') or 'no URL given'}); they were "
                f"not fetched, so what they declare and whether they validate is unknown.{elsewhere}"}
    if manifest.get("state") == "unreadable":
        return {**_declared(xmp, png), "statement":
                f"The file carries content credentials that could not be read ({manifest.get('reason')}): they establish "
                f"nothing, and a damaged or unknown manifest is itself worth a look.{elsewhere}"}
    if manifest.get("present"):
        signer = (manifest.get("signer") or {}).get("common_name") or "an unnamed signer"
        if manifest.get("validation_state") == "Invalid":
            return {"declared_ai": None, "declared_by": "c2pa", "statement":
                    f"Content credentials signed by {signer} are present but do not validate "
                    f"({', '.join(manifest.get('failures') or []) or 'invalid'}): the file changed after signing or the "
                    "manifest is damaged, so they establish nothing."}
        sources = set(manifest.get("digital_source_types") or [])
        who = f"{signer}, {manifest.get('trust')}"
        if sources & AI_SOURCE_TYPES:
            return {"declared_ai": True, "declared_by": "c2pa", "statement":
                    f"Signed content credentials ({who}) declare this file AI-generated "
                    f"({', '.join(sorted(sources & AI_SOURCE_TYPES))}). A valid signature proves who signed, not what is true."}
        if sources & CAPTURE_SOURCE_TYPES:
            return {"declared_ai": False, "declared_by": "c2pa", "statement":
                    f"Signed content credentials ({who}) declare {', '.join(sorted(sources & CAPTURE_SOURCE_TYPES))}. "
                    "A valid signature proves who signed, not that the content is true."}
    if xmp.get("digital_source_type") in AI_SOURCE_TYPES:
        return {"declared_ai": True, "declared_by": "xmp", "statement":
                f"The file's XMP declares it AI-generated ({xmp['digital_source_type']}); unsigned metadata, easy to add or remove."}
    if png:
        return {"declared_ai": True, "declared_by": "png", "statement":
                f"The PNG carries generation parameters ({png['generator']}): most likely made by that generator; "
                "unsigned metadata, easy to add or remove."}
    if xmp.get("digital_source_type") in CAPTURE_SOURCE_TYPES:
        return {"declared_ai": False, "declared_by": "xmp", "statement":
                f"The file's XMP declares {xmp['digital_source_type']}; unsigned metadata, easy to add or remove."}
    if manifest.get("present"):
        return {"declared_ai": None, "declared_by": "c2pa", "statement":
                f"Content credentials ({manifest.get('validation_state')}, {manifest.get('trust')}) are present but "
                "declare no digital source type."}
    if block.get("errors"):
        return {"declared_ai": None, "declared_by": None, "statement":
                f"No content credentials or AI metadata could be read, and part of the file's metadata was unreadable "
                f"({'; '.join(block['errors'])})."}
    return {"declared_ai": None, "declared_by": None, "statement":
            "No content credentials or AI metadata found. Absence proves nothing: most platforms strip metadata on upload."}


def _declared(xmp: dict, png: dict | None) -> dict[str, Any]:
    """``declared_ai`` and ``declared_by`` from unsigned metadata, when the C2PA manifest could not say."""
    if xmp.get("digital_source_type") in AI_SOURCE_TYPES:
        return {"declared_ai": True, "declared_by": "xmp"}
    if png:
        return {"declared_ai": True, "declared_by": "png"}
    if xmp.get("digital_source_type") in CAPTURE_SOURCE_TYPES:
        return {"declared_ai": False, "declared_by": "xmp"}
    return {"declared_ai": None, "declared_by": None}


def _unsigned(xmp: dict, png: dict | None) -> str:
    """A sentence on what unsigned metadata declares, for statements about a manifest that could not be read."""
    if png:
        return f" Unsigned PNG metadata names a generator ({png['generator']})."
    if xmp.get("digital_source_type"):
        return f" Unsigned XMP declares {xmp['digital_source_type']}."
    return ""
