"""The record store's settings and schema migrations (the worker side is handler/recorder.py; the review
queries are deepfake_service/records/review.py)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

from deepfake_service.project import RECORDS_CONFIG, ROOT
from handler.store import RecordSettings, connect

URL_ENV = "DEEPFAKE_RECORDS_URL"  # overrides the config file's url (passwords belong here)
REFRESH_ENV = "DEEPFAKE_RECORDS_REFRESH_S"  # overrides refresh_s (the tests' servers: labels reach answers in seconds)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x6466_7265_636F  # the PostgreSQL advisory lock a migration holds until it commits


def read_settings(config: Path = RECORDS_CONFIG, environ: dict | None = None, url: str | None = None) -> RecordSettings:
    """config/records.yaml with ``DEEPFAKE_RECORDS_URL`` over its url (and ``DEEPFAKE_RECORDS_REFRESH_S``
    over refresh_s), and ``url`` (a caller's own store, "off": none) over both; a relative SQLite path is
    taken from the project root. Raises ``ValueError`` for a key the file may not hold (a nested
    ``records:`` section would otherwise turn records off unnoticed)."""
    import yaml

    section = (yaml.safe_load(config.read_text()) or {}) if config.is_file() else {}
    settable = [f.name for f in fields(RecordSettings)]
    unknown = sorted(set(section) - set(settable)) if isinstance(section, dict) else ["(not a mapping)"]
    if unknown:
        raise ValueError(f"{config}: unknown record store setting(s) {unknown}; the file is flat: {', '.join(settable)}")
    environ = os.environ if environ is None else environ
    url = str(url or environ.get(URL_ENV) or section.get("url") or "off")
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        url = prefix + str(ROOT / url[len(prefix):])
    known = {k: v for k, v in section.items() if k != "url"}
    if environ.get(REFRESH_ENV):
        known["refresh_s"] = float(environ[REFRESH_ENV])
    return RecordSettings(url=url, **known)


def shared_store(settings: RecordSettings) -> RecordSettings:
    """``settings`` when every replica of a deployment can share their store: records off, or a database
    server that answers, migrated here. Raises ``ValueError`` for a SQLite file, which each replica would keep
    alone, and for a store that cannot be reached or migrated (a replica then stops, and is restarted until the
    database is up, instead of serving without records)."""
    if settings.url.startswith("sqlite"):
        raise ValueError(f"the record store {redacted(settings.url)} is a SQLite file, which each replica keeps alone: "
                         "set DEEPFAKE_RECORDS_URL to a PostgreSQL URL (postgresql+psycopg://user:password@host/db), or off")
    if settings.enabled:
        try:
            migrate(settings.url)
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, a newer schema: all stop the start
            raise ValueError(f"the shared record store {redacted(settings.url)} cannot be reached or migrated "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return settings


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a URL SQLAlchemy cannot parse)"


def migrate(url: str, to: str = "head") -> None:
    """Bring the database at ``url`` to the newest schema (from empty too), or to revision ``to``, with Alembic."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = connect(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # replicas starting at once migrate one after the other
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            config.attributes["connection"] = connection
            command.upgrade(config, to)
    finally:
        engine.dispose()


def schema_revision(url: str) -> str | None:
    """The database's Alembic revision (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    engine = connect(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
