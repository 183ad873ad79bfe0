"""Who a record says sent a request (handler/clients.py): a page's signed claim, a deployment's proxy header,
else the key's fingerprint; never a header any caller sets."""

from __future__ import annotations

from handler.clients import CLIENT_HEADER, KEY_ENV, SIGNATURE_HEADER, Clients, signature

KEY = "k" * 64
BEARER = {"Authorization": "Bearer secret-key"}


def test_a_signed_page_claim_names_the_pages_user():
    claim = {CLIENT_HEADER: "page:alice", SIGNATURE_HEADER: signature(KEY, "page:alice")}
    assert Clients(KEY).of({**BEARER, **claim}) == "page:alice"


def test_a_claim_any_caller_sets_is_not_believed():
    fingerprint = Clients(KEY).of(BEARER)
    assert fingerprint.startswith("key:") and "secret-key" not in fingerprint
    assert Clients(KEY).of({**BEARER, CLIENT_HEADER: "page:alice"}) == fingerprint  # unsigned
    assert Clients(KEY).of({**BEARER, CLIENT_HEADER: "page:alice", SIGNATURE_HEADER: signature(KEY, "page:bob")}) == fingerprint
    assert Clients(KEY).of({**BEARER, CLIENT_HEADER: "page:alice", SIGNATURE_HEADER: signature("other", "page:alice")}) == fingerprint
    assert Clients("").of({**BEARER, CLIENT_HEADER: "page:alice", SIGNATURE_HEADER: signature("", "page:alice")}) == fingerprint


def test_a_deployments_proxy_header_names_api_callers_only_when_configured():
    proxied = {**BEARER, "X-Forwarded-User": " svc-moderation "}
    assert Clients(KEY, "X-Forwarded-User").of(proxied) == "proxy:svc-moderation"
    assert Clients(KEY).of(proxied).startswith("key:")  # not configured: a header like any other
    assert Clients(KEY, "X-Forwarded-User").of({}) is None


def test_the_key_comes_from_the_environment_the_starter_sets():
    assert Clients.from_environment("X-User", {KEY_ENV: KEY}) == Clients(KEY, "X-User")
    assert Clients.from_environment(environ={}) == Clients()
