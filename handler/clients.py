"""Who sent a request, as the record names it: never a header any caller may set.

- The upload page's user: the page puts ``X-Deepfake-Client: page:<user>`` (the user its access control
  authenticated) and ``X-Deepfake-Client-Signature``, an HMAC-SHA256 of that value under the key the starter
  of the server made for this run (``DEEPFAKE_CLIENT_KEY``, also written to the run folder for the page). A
  claim without a valid signature is not believed.
- An API caller behind a deployment's authenticating proxy: the header that proxy sets (records setting
  ``client_header``), as ``proxy:<value>``; only a deployment that lets nothing reach TorchServe around its
  proxy may set it.
- Else a short fingerprint of the bearer key, ``key:<12 hex>`` (keys rotate: it tells one key's requests
  apart, it names no lasting client), else None.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Mapping

CLIENT_HEADER = "X-Deepfake-Client"  # who the upload page says asked, believed only when signed
SIGNATURE_HEADER = "X-Deepfake-Client-Signature"
KEY_ENV = "DEEPFAKE_CLIENT_KEY"  # set by whoever starts TorchServe (deepfake_service/serving/process.py)
KEY_FILE = "client.key"  # the same key in the run folder (owner-only), where the upload page reads it
MOST = 200  # characters of a client name kept


def signature(key: str, client: str) -> str:
    """The page's signature of ``client`` under ``key``."""
    return hmac.new(key.encode(), client.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Clients:
    """How a worker names the sender of a request: ``key`` checks the page's signed claims ("": none is
    believed); ``trusted_header`` is a deployment's proxy header ("": none)."""

    key: str = ""
    trusted_header: str = ""

    @classmethod
    def from_environment(cls, trusted_header: str = "", environ: Mapping[str, str] | None = None) -> "Clients":
        return cls((os.environ if environ is None else environ).get(KEY_ENV, ""), trusted_header)

    def of(self, headers: Mapping[str, str]) -> str | None:
        """The client a record names for a request with ``headers`` (module docstring)."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        claimed = lowered.get(CLIENT_HEADER.lower(), "").strip()[:MOST]
        signed = lowered.get(SIGNATURE_HEADER.lower(), "")
        if claimed and self.key and hmac.compare_digest(signed.encode(), signature(self.key, claimed).encode()):
            return claimed
        proxied = lowered.get(self.trusted_header.lower(), "").strip() if self.trusted_header else ""
        if proxied:
            return ("proxy:" + proxied)[:MOST]
        bearer = lowered.get("authorization", "")
        if bearer:
            return "key:" + hashlib.sha256(bearer.encode()).hexdigest()[:12]
        return None
