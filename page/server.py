"""The upload page: a thin, bounded proxy beside TorchServe that keeps the inference key server-side.

GET  /             the page (page/static/index.html, app.css, app.js; nothing from the internet)
GET  /api/info     model name, version, demo flag, upload limits
POST /api/analyze  multipart ``image`` (+ optional ``face_mode``) -> TorchServe /explanations/<model>
                   (/predictions/<model> with --no-explanations; videos: /predictions/<video model>,
                   the registration whose own workers analyse videos, handler/roles.py)
GET  /healthz      200 when this process answers
GET  /review       the review view (page/static/review.html) over the record store (docs/records.md):
GET  /api/records             records, uncertain first, and their total (filters: verdict, declared_ai, labelled, since, until,
                              model, version, client, limit, offset)
GET  /api/records/counts      to review, labelled since day_start (default: today, UTC), agreement with the model
GET  /api/records/agreement   agreement, false positives, missed fakes per model version and day (bucket=day|week)
GET  /api/records/<id>        one record with its label history and the list of what it kept of its media
GET  /api/records/<id>/media/<n>  a kept file (the thumbnail, the crops as the model saw them; JPEG)
POST /api/records/<id>/label  {"label": "real"|"fake"|"unsure", "note": ...}; the reviewer is the page's client

The key is re-read from TorchServe's key_file.json for every call (keys expire and can be rotated) and
never sent to the browser. Uploads above the cap get a 413 before anything is forwarded; TorchServe's
4xx answers pass through with their JSON body; its 5xx and timeouts become 502/504 JSON errors.
/api/* is guarded (page/guard.py): a page token or a proxy's identity header when configured (required to
listen beyond loopback), same-origin POSTs only, per-client rate and concurrency limits, an audit line per
analysis.

  python -m page.server --inference-url http://127.0.0.1:8080 --key-file run/key_file.json
  python -m page.server --host 0.0.0.0 --token-file /run/secrets/page-token ...   (reachable from other hosts)
"""

from __future__ import annotations

import argparse
import datetime
import io
import logging
import sys
import time
from pathlib import Path

import requests
from flask import Flask, Response, jsonify, request, send_from_directory
from PIL import Image
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from deepfake_service.project import KEY_FILE, MODEL_NAME, PAGE_HOST, PAGE_PORT, RUN_DIR, handler_options
from deepfake_service.records import read_settings
from deepfake_service.records.review import (
    BUCKETS,
    BadFilter,
    Filters,
    ReviewError,
    add_label,
    agreement_over_time,
    count_records,
    get_record,
    list_records,
    media_file,
    queue_counts,
)
from deepfake_service.serving.server import ServeError, read_key_file
from handler.clients import KEY_FILE as CLIENT_KEY_FILE
from handler.clients import client_headers, probe_headers, read_key
from handler.faces import FACE_MODES
from handler.payload import FACE_MODE_FIELD, FACE_MODE_HEADER
from handler.roles import video_twin
from handler.store import connect, iso_utc, now
from handler.video import container_format
from page.guard import (
    CONCURRENCY,
    RATE,
    TOKEN_HEADER,
    Access,
    AccessControlMissing,
    Limiter,
    cross_site,
    record,
    require_access_control,
    retry_after,
)

STATIC = Path(__file__).resolve().parent / "static"
ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff", "image/avif", "image/heic", "image/heif",
                  "video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo")
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 60.0
INFO_TTL = 60.0  # seconds /api/info caches the model's identity
MAX_FILTER_TEXT = 200  # the longest model, version or client filter (the columns' own width)
AGREEMENT_DAYS, MAX_AGREEMENT_DAYS = 90, 36_500  # the chart's window by default, and at most
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
                               "script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def shipped_upload_cap() -> int:
    """The larger of ``max_image_bytes`` and ``video_max_bytes`` in config/model-config.yaml: the page refuses
    what the handler would refuse whatever the file is (the handler still applies each cap to its kind)."""
    options = handler_options()
    return max(options.max_image_bytes, options.video_max_bytes)


def error(status: int, name: str, detail: str) -> tuple[Response, int]:
    return jsonify({"error": name, "detail": detail}), status


def _probe_image() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def create_app(
    inference_url: str,
    model: str,
    key_file: Path,
    max_upload_bytes: int,
    access: Access = Access(),
    limiter: Limiter | None = None,
    explanations: bool = True,
    video_model: str | None = None,
    records: Engine | None = None,
    client_key: str = "",
) -> Flask:
    """The page app; ``key_file`` is TorchServe's key_file.json, read per call; ``access`` and ``limiter``
    guard /api/* (page/guard.py); videos go to ``video_model`` (None: ``model``; the command line defaults
    to ``<model>-video``), and to ``model`` when the server answers 404 there (no video registration);
    ``records``: the record store the review routes read and label (None: they answer 404); ``client_key``:
    the run's key with which the page signs who asked, so the record believes it (handler/clients.py)."""
    limiter = limiter or Limiter()
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # keep the model's label order (config.id2label) in probabilities
    # Werkzeug refuses larger bodies with 413 before reading them; the margin covers multipart framing.
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + 64 * 1024
    endpoint = inference_url.rstrip("/")
    info_cache: dict = {}
    session = requests.Session()

    def auth() -> dict[str, str]:
        return {"Authorization": f"Bearer {read_key_file(key_file)['inference']}"}

    def forward(path: str, payload: bytes, face_mode: str | None, to: str = model, client: str | None = None,
                probe: bool = False) -> requests.Response:
        headers = {**auth(), "Content-Type": "application/octet-stream"}
        if client:  # who asked, for the record
            headers.update(client_headers(client_key, f"page:{client}"))
        if probe:
            headers.update(probe_headers(client_key))  # recorded apart from the reviewable records
        if face_mode:
            headers[FACE_MODE_HEADER] = face_mode
        return session.post(f"{endpoint}/{path}/{to}", data=payload, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.before_request
    def guard():
        """Who may use /api/*: the page token or the proxy's identity, from this page only."""
        if not request.path.startswith("/api/"):
            return None
        refused, client = access.client(request.headers, request.remote_addr)
        if refused:
            return error(401, "not authenticated" if access.identity_header else "page token required", refused)
        if request.method == "POST":
            problem = cross_site(request.headers, request.host)
            if problem:
                return error(403, "cross-site request", problem)
        if request.path.startswith("/api/records"):
            refused = access.may_review(client)
            if refused:
                return error(403, "not a reviewer", refused)
        request.environ["page.client"] = client
        return None

    @app.errorhandler(413)
    def too_large(_exc):
        return error(413, "payload too large", f"uploads are limited to {max_upload_bytes} bytes")

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/api/info")
    def info():
        limits = {"model": model, "max_upload_bytes": max_upload_bytes, "accepted_types": list(ACCEPTED_TYPES),
                  "face_modes": list(FACE_MODES), "token_header": TOKEN_HEADER if access.token else None}
        if time.monotonic() - info_cache.get("at", -INFO_TTL) >= INFO_TTL:
            try:
                answer = forward("predictions", _probe_image(), "off", probe=True)
                answer.raise_for_status()
                body = answer.json()
                info_cache.update(at=time.monotonic(), identity={
                    "version": body.get("version"), "demo": body.get("demo"), "labels": list(body.get("probabilities", {}))})
            except (requests.RequestException, ServeError, ValueError) as exc:
                return jsonify({**limits, "available": False, "detail": f"model server not answering: {type(exc).__name__}"})
        return jsonify({**limits, "available": True, **info_cache["identity"]})

    @app.post("/api/analyze")
    def analyze():
        upload = request.files.get("image")
        if upload is None:
            return error(400, "no image in request", "send the image as a multipart file field named image")
        face_mode = (request.form.get(FACE_MODE_FIELD) or "").strip().lower()[:32] or None  # as the handler reads it
        if face_mode is not None and face_mode not in FACE_MODES:
            return error(400, "bad option", f"{FACE_MODE_FIELD} must be one of {', '.join(FACE_MODES)}")
        payload = upload.read(max_upload_bytes + 1)
        if len(payload) > max_upload_bytes:
            return error(413, "payload too large", f"uploads are limited to {max_upload_bytes} bytes")
        client = request.environ.get("page.client", "unknown")
        wait = limiter.acquire(client)
        if wait is not None:
            response, status = error(429, "too many requests", f"at most {limiter.rate} analyses a minute and "
                                     f"{limiter.concurrency} at once per client; retry in {retry_after(wait)} s")
            response.headers["Retry-After"] = retry_after(wait)
            return response, status
        try:
            response, status = analyze_upload(payload, face_mode, client)
        finally:
            limiter.release(client)
        record(client, payload, status, response.get_json(silent=True))
        return response, status

    def analyze_upload(payload: bytes, face_mode: str | None, client: str) -> tuple[Response, int]:
        # Images get the attention map too; videos go to their own registration's /predictions.
        video = container_format(payload) is not None
        path = "explanations" if explanations and not video else "predictions"
        try:
            answer = forward(path, payload, face_mode, video_model or model if video else model, client)
            if video and answer.status_code == 404 and (video_model or model) != model:  # the server has no video registration
                answer = forward(path, payload, face_mode, model, client)
        except requests.Timeout:
            return error(504, "model server timeout", f"no answer within {READ_TIMEOUT:.0f} s")
        except (requests.RequestException, ServeError) as exc:
            return error(503, "model server unavailable", f"{type(exc).__name__}; is TorchServe running?")
        if answer.status_code >= 500:
            return error(502, "model server error", f"TorchServe answered {answer.status_code}")
        try:
            body = answer.json()
        except ValueError:
            return error(502, "model server error", f"TorchServe answered {answer.status_code} without JSON")
        return jsonify(body), answer.status_code

    @app.get("/review")
    def review():
        return send_from_directory(STATIC, "review.html")

    def store() -> Engine:
        if records is None:
            raise RecordsOff("records are off on this server (config/records.yaml url: off)")
        return records

    @app.errorhandler(ReviewError)
    def review_refused(exc: ReviewError):
        return error(exc.status, exc.error, str(exc))

    @app.errorhandler(SQLAlchemyError)
    def store_failed(exc: SQLAlchemyError):
        return error(503, "record store unavailable", type(exc).__name__)

    @app.get("/api/records")
    def record_list():
        filters = filters_from(request.args)
        return jsonify({"records": list_records(store(), filters), "total": count_records(store(), filters)})

    @app.get("/api/records/counts")
    def record_counts():
        return jsonify(queue_counts(store(), now(), moment_from(request.args, "day_start")))

    @app.get("/api/records/agreement")
    def record_agreement():
        bucket = request.args.get("bucket") or "day"
        if bucket not in BUCKETS:
            raise BadFilter(f"bucket must be one of {', '.join(BUCKETS)}")
        since = window_from(request.args, now())
        return jsonify({"bucket": bucket, "since": iso_utc(since), "series": agreement_over_time(store(), bucket, since)})

    @app.get("/api/records/<record_id>")
    def record_detail(record_id: str):
        return jsonify(get_record(store(), record_id))

    @app.get("/api/records/<record_id>/media/<int:position>")
    def record_media_file(record_id: str, position: int):
        data, content_type = media_file(store(), record_id, position)
        response = Response(data, mimetype=content_type)
        response.headers["Cache-Control"] = "private, no-store"  # reviewers' eyes only: no shared or disk cache
        return response

    @app.post("/api/records/<record_id>/label")
    def record_label(record_id: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error(400, "bad label", 'send JSON {"label": "real" | "fake" | "unsure", "note": "..."}')
        reviewer = request.environ.get("page.client", "unknown")
        return jsonify(add_label(store(), record_id, body.get("label"), body.get("note"), reviewer)), 201

    return app


class RecordsOff(ReviewError):
    status, error = 404, "records unavailable"


def moment_from(args, name: str) -> datetime.datetime | None:
    """The query's ``name`` as a time in UTC (UTC when it names no zone; SQLite keeps none); None when absent."""
    value = args.get(name)
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)
    except ValueError:
        raise BadFilter(f"{name} must be an ISO date or time, e.g. 2026-11-29") from None
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00, before the calendar's first moment in UTC
        raise BadFilter(f"{name} is outside the calendar in UTC") from None


def window_from(args, at: datetime.datetime) -> datetime.datetime:
    """Where the agreement chart starts: the query's ``since`` (an ISO time), else ``days`` (default
    ``AGREEMENT_DAYS``) before ``at``; ``BadFilter`` for both, or for days that are not 1..``MAX_AGREEMENT_DAYS``."""
    since, days = moment_from(args, "since"), args.get("days")
    if since is not None and days:
        raise BadFilter("give since or days, not both")
    if since is not None:
        return since
    try:
        days = int(days or AGREEMENT_DAYS)
    except ValueError:
        raise BadFilter(f"days must be a whole number from 1 to {MAX_AGREEMENT_DAYS}") from None
    if not 1 <= days <= MAX_AGREEMENT_DAYS:
        raise BadFilter(f"days must be a whole number from 1 to {MAX_AGREEMENT_DAYS}")
    return at - datetime.timedelta(days=days)


def filters_from(args) -> Filters:
    """The review list's query string as ``Filters``; ``BadFilter`` names a bad value."""
    def flag(name: str) -> bool | None:
        value = args.get(name)
        if value in (None, ""):
            return None
        if value not in ("true", "false"):
            raise BadFilter(f"{name} must be true or false")
        return value == "true"

    def text(name: str) -> str | None:
        value = (args.get(name) or "").strip()
        if len(value) > MAX_FILTER_TEXT:
            raise BadFilter(f"{name} must be at most {MAX_FILTER_TEXT} characters")
        return value or None

    verdict = args.get("verdict") or None
    if verdict not in (None, "real", "fake", "uncertain"):
        raise BadFilter("verdict must be real, fake or uncertain")
    try:
        limit, offset = int(args.get("limit", 50)), int(args.get("offset", 0))
    except ValueError:
        raise BadFilter("limit and offset must be integers") from None
    return Filters(verdict, flag("declared_ai"), flag("labelled"), moment_from(args, "since"), moment_from(args, "until"), limit, offset,
                   model=text("model"), version=text("version"), client=text("client"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inference-url", default="http://127.0.0.1:8080", help="TorchServe inference address (default: %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="(default: %(default)s)")
    parser.add_argument("--video-model", help="the registration videos go to (default: the model's video twin, "
                                               "<model>-video; give the model's own name when the server has none)")
    parser.add_argument("--key-file", type=Path, default=RUN_DIR / KEY_FILE, help="(default: %(default)s)")
    parser.add_argument("--client-key-file", type=Path, help="the run's key that signs who asked, so records name the page's "
                                                              f"users (default: {CLIENT_KEY_FILE} beside --key-file)")
    parser.add_argument("--host", default=PAGE_HOST, help="(default: %(default)s)")
    parser.add_argument("--port", type=int, default=PAGE_PORT, help="(default: %(default)s)")
    parser.add_argument("--max-upload-bytes", type=int, default=shipped_upload_cap(),
                        help="upload cap (default: the larger of max_image_bytes and video_max_bytes in config/model-config.yaml)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent uploads handled (default: %(default)s)")
    parser.add_argument("--token-file", type=Path, help="file holding the page token users enter once (needed beyond loopback, "
                                                           "unless --identity-header)")
    parser.add_argument("--identity-header", help="header an authenticating proxy in front sets to the user's identity, "
                                                  "e.g. X-Forwarded-User (oauth2-proxy)")
    parser.add_argument("--reviewers", default="", help="comma-separated identities (from --identity-header) who may read and "
                                                         "label records on /review; without access control (loopback) the local user may")
    parser.add_argument("--rate", type=int, default=RATE, help="analyses per client per minute (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="analyses per client at once (default: %(default)s)")
    parser.add_argument("--no-explanations", action="store_true", help="predictions only: no attention maps (the costly path)")
    args = parser.parse_args(argv)
    from waitress import serve

    token = args.token_file.read_text().strip() if args.token_file else None
    if args.token_file and len(token) < 16:
        sys.exit(f"page: the token in {args.token_file} is {len(token)} characters; use at least 16 (e.g. openssl rand -hex 24)")
    access = Access(token=token, identity_header=args.identity_header,
                    reviewers=frozenset(r.strip() for r in args.reviewers.split(",") if r.strip()))
    try:
        require_access_control(args.host, access)
    except AccessControlMissing as exc:
        sys.exit(f"page: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = read_settings()
    except ValueError as exc:
        sys.exit(f"page: {exc}")
    client_key_file = args.client_key_file or args.key_file.parent / CLIENT_KEY_FILE
    client_key = read_key(client_key_file)
    if not client_key:
        logging.getLogger(__name__).warning("no %s: records name the page's key, not its users", client_key_file)
    app = create_app(args.inference_url, args.model, args.key_file, args.max_upload_bytes, access,
                     Limiter(args.rate, args.concurrency), explanations=not args.no_explanations,
                     video_model=args.video_model or video_twin(args.model),
                     records=connect(settings.url) if settings.enabled else None, client_key=client_key)
    print(f"upload page on http://{args.host}:{args.port}/ -> {args.inference_url} model {args.model}", flush=True)
    # waitress's own cap is the hard bound (plain-text 413); below it Flask answers oversize uploads in JSON.
    serve(app, host=args.host, port=args.port, threads=args.threads, channel_timeout=READ_TIMEOUT + 10,
          max_request_body_size=2 * app.config["MAX_CONTENT_LENGTH"], ident=f"{MODEL_NAME}-page")


if __name__ == "__main__":
    main()
