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

A probe (the page's health probe, rollout's smoke tests) is marked the same way, signed under the run's key,
so that no caller can keep its own upload out of review by calling it a probe.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from handler.store import PROBE

CLIENT_HEADER = "X-Deepfake-Client"  # who the upload page says asked, believed only when signed
SIGNATURE_HEADER = "X-Deepfake-Client-Signature"
PURPOSE_HEADER = "X-Deepfake-Purpose"  # "probe": a health probe or smoke test, recorded apart from review
PURPOSE_SIGNATURE_HEADER = "X-Deepfake-Purpose-Signature"
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

    key: str = field(default="", repr=False)
    trusted_header: str = ""

    @classmethod
    def from_environment(cls, trusted_header: str = "", environ: Mapping[str, str] | None = None) -> "Clients":
        return cls((os.environ if environ is None else environ).get(KEY_ENV, ""), trusted_header)

    def signed(self, value: str, given: str) -> bool:
        """Whether ``given`` is the signature of ``value`` under the run's key (never without a key)."""
        return bool(self.key) and hmac.compare_digest(given.encode(), signature(self.key, value).encode())

    def probe(self, headers: Mapping[str, str]) -> bool:
        """Whether the request is the page's or rollout's probe: ``X-Deepfake-Purpose: probe``, signed under
        the run's key (an unsigned one is an ordinary request, so no caller hides its upload from review)."""
        return (headers_value(headers, PURPOSE_HEADER).lower() == PROBE
                and self.signed(PROBE, headers_value(headers, PURPOSE_SIGNATURE_HEADER)))

    def of(self, headers: Mapping[str, str]) -> str | None:
        """The client a record names for a request with ``headers`` (module docstring)."""
        claimed = headers_value(headers, CLIENT_HEADER)[:MOST]
        if claimed and self.signed(claimed, headers_value(headers, SIGNATURE_HEADER)):
            return claimed
        proxied = headers_value(headers, self.trusted_header) if self.trusted_header else ""
        if proxied:
            return ("proxy:" + proxied)[:MOST]
        bearer = headers_value(headers, "Authorization")
        if bearer:
            return "key:" + hashlib.sha256(bearer.encode()).hexdigest()[:12]
        return None


def headers_value(headers: Mapping[str, object], name: str) -> str:
    """The text of header ``name`` (any case), or "": TorchServe also lists a multipart request's parts among
    its headers, as dicts, which are never a header's value."""
    value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), "")
    return value.strip() if isinstance(value, str) else ""


def read_key(path: Path) -> str:
    """The run's key from ``path`` (the run folder's ``KEY_FILE``), or "" when there is none."""
    return path.read_text().strip() if path.is_file() else ""


def client_headers(key: str, client: str) -> dict[str, str]:
    """The headers with which the page names who asked, signed under the run's ``key`` (unsigned without one:
    the workers then name the page's key instead)."""
    claimed = client[:MOST]
    return {CLIENT_HEADER: claimed, **({SIGNATURE_HEADER: signature(key, claimed)} if key else {})}


def probe_headers(key: str) -> dict[str, str]:
    """The headers that mark a request as a probe, signed under the run's ``key`` (none without a key)."""
    return {PURPOSE_HEADER: PROBE, PURPOSE_SIGNATURE_HEADER: signature(key, PROBE)} if key else {}
