"""What stands between the upload page and the model: who may call it, from which page, how often, and the
record each analysis leaves.

* Access: a page token (operator-set, entered once in the browser, kept in its session storage and sent
  as ``X-Page-Token``; never the inference key), or an identity header set by an authenticating proxy in
  front (e.g. oauth2-proxy's ``X-Forwarded-User``). Bound beyond loopback, the page refuses to start
  without one of them (``require_access_control``).
* Cross-site: a POST whose ``Origin`` (or, without one, ``Referer``) is not the page's own host is 403;
  the custom token header also makes browsers preflight any cross-site attempt.
* Abuse: per client (identity, else address) at most ``rate`` analyses per minute and ``concurrency`` at
  once; beyond that 429 with ``Retry-After``.
* Record: one JSON line per analysis: time, client, the input's SHA-256 and size, model version, verdict,
  status; never the image, the page token or the inference key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN_HEADER = "X-Page-Token"
WINDOW_S = 60.0
MAX_CLIENTS = 10_000  # clients tracked by the limiter; the oldest are forgotten beyond this
# Per client: analyses started per minute and analyses at once (the page's --rate and --concurrency defaults).
RATE, CONCURRENCY = 30, 2

audit = logging.getLogger("page.audit")


class AccessControlMissing(Exception):
    """The page would listen beyond loopback with nobody checked at the door."""


@dataclass(frozen=True)
class Access:
    """``token``: the page token, or None; ``identity_header``: the proxy's identity header, or None;
    ``reviewers``: the identities (from that header) who may read and label records."""

    token: str | None = None
    identity_header: str | None = None
    reviewers: frozenset[str] = frozenset()

    @property
    def configured(self) -> bool:
        return bool(self.token or self.identity_header)

    def client(self, headers, address: str | None) -> tuple[str | None, str]:
        """(refusal detail or None, the client's name for limits and the record)."""
        if self.identity_header:
            identity = (headers.get(self.identity_header) or "").strip()
            if not identity:
                return f"no {self.identity_header} header: the page is meant to be reached through its authenticating proxy", ""
            return None, identity[:200]
        if self.token:
            given = headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return ("missing page token" if not given else "wrong page token"), ""
        return None, address or "unknown"


    def may_review(self, client: str) -> str | None:
        """Why ``client`` may not read or label records, or None. Reviewers are named identities from the
        proxy's header listed in ``reviewers``; a shared page token names nobody, so it never reviews. A page
        without access control (loopback only) lets its local user review."""
        if not self.configured:
            return None
        if not self.identity_header:
            return "reviewing needs named reviewers: run the page behind a proxy with --identity-header and --reviewers"
        if client not in self.reviewers:
            return f"{client[:60]} is not a reviewer (the page's --reviewers list)"
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_access_control(host: str, access: Access) -> None:
    """Raise ``AccessControlMissing`` (one line saying what to set) for a non-loopback bind without access control."""
    if not is_loopback(host) and not access.configured:
        raise AccessControlMissing(
            f"refusing to serve the page on {host} without access control: set --token-file FILE (a page token users "
            "enter once) or --identity-header X-Forwarded-User behind an authenticating proxy (docs/operations.md#security)"
        )


def cross_site(headers, host: str) -> str | None:
    """Why a state-changing request is cross-site, or None: its Origin (else Referer) must name ``host``."""
    claimed = headers.get("Origin") or headers.get("Referer")
    if not claimed:
        return None  # not a browser (curl, scripts): the token or proxy still applies
    origin = urlsplit(claimed)
    if claimed == "null" or origin.netloc.lower() != host.lower():
        return f"requests must come from this page ({host}), not {claimed[:100]}"
    return None


class Limiter:
    """At most ``rate`` starts per client per minute and ``concurrency`` in flight."""

    def __init__(self, rate: int = RATE, concurrency: int = CONCURRENCY) -> None:
        self.rate, self.concurrency = rate, concurrency
        self._lock = threading.Lock()
        self._starts: dict[str, deque[float]] = {}
        self._busy: dict[str, int] = {}

    def acquire(self, client: str) -> float | None:
        """None when ``client`` may go on (call ``release`` after), else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            starts = self._starts.setdefault(client, deque())
            while starts and now - starts[0] >= WINDOW_S:
                starts.popleft()
            if len(starts) >= self.rate:
                return WINDOW_S - (now - starts[0])
            if self._busy.get(client, 0) >= self.concurrency:
                return 1.0
            starts.append(now)
            self._busy[client] = self._busy.get(client, 0) + 1
            if len(self._starts) > MAX_CLIENTS:
                for stale in list(self._starts)[: len(self._starts) - MAX_CLIENTS]:
                    if not self._busy.get(stale):
                        del self._starts[stale]
            return None

    def release(self, client: str) -> None:
        with self._lock:
            self._busy[client] = max(0, self._busy.get(client, 1) - 1)
            if not self._busy[client]:
                del self._busy[client]


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def record(client: str, payload: bytes, status: int, body: dict | None) -> None:
    """One audit line for an analysis (no image, no token, no key)."""
    body = body or {}
    audit.info(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "client": client,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
        "status": status,
        "model_version": body.get("version"),
        "media": body.get("media"),
        "verdict": body.get("verdict"),
        "error": body.get("error"),
    }))
