"""Shared fixtures: tiny ViT checkpoints built once per session (seconds on CPU); the markers of the tiers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepfake_service.packaging.demo import write_random_checkpoint
from deepfake_service.records import migrate
from deepfake_service.records.postgres import postgres
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions
from handler.store import connect
from tests.tiny import SERVED_NAME, SERVED_VERSION, TINY_LABELS, tiny_config

# Fixtures that start what `make test-fast` leaves out: a test using one, directly or through another
# fixture, gets that marker (pyproject.toml registers them). Tests that start a server inline, and the
# PostgreSQL parameter of tests/test_records.py:store_url, carry the marker themselves.
MARKED_BY_FIXTURE = {
    "served": {"server", "v2_server", "model_api_server", "versioned_server", "demo_page_url"},
    "browser": {"browser"},
    "database": {"postgres_url"},
}


def pytest_collection_modifyitems(items):
    for item in items:
        for marker, fixtures in MARKED_BY_FIXTURE.items():
            if fixtures & set(item.fixturenames):
                item.add_marker(marker)


@pytest.fixture(scope="session", autouse=True)
def record_store(tmp_path_factory) -> str:
    """The record store every server the tests start writes to (never the project's var/): a SQLite file
    for the session, labelled hashes refreshed every second; servers of loadtest/harness.py are pointed at
    it by their opt-in (they default to a throw-away store of their own)."""
    from deepfake_service.records import REFRESH_ENV, URL_ENV, migrate
    from loadtest.harness import RECORDS_ENV

    url = f"sqlite:///{tmp_path_factory.mktemp('records') / 'records.sqlite3'}"
    os.environ[URL_ENV], os.environ[RECORDS_ENV], os.environ[REFRESH_ENV] = url, url, "1"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint", tiny_config(), seed=1, demo=False)


@pytest.fixture(scope="session")
def tiny_demo_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny-demo") / "checkpoint", tiny_config(), seed=1, demo=True)


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory) -> Path:
    """A labelled image folder: 4 generated JPEGs in <label>/ for each tiny-checkpoint label."""
    from deepfake_service.samples import imagegen

    root = tmp_path_factory.mktemp("labelled")
    for index, label in TINY_LABELS.items():
        (root / label).mkdir()
        for seed in range(4):
            (root / label / f"{seed}.jpg").write_bytes(imagegen.jpeg(seed=10 * index + seed))
    return root


@pytest.fixture(scope="session")
def classifier(tiny_checkpoint) -> DeepfakeClassifier:
    return DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(), name="tiny", version="3.1")


@pytest.fixture(scope="session")
def server(tiny_checkpoint, tmp_path_factory):
    """A real TorchServe serving the tiny ViT (torch fp32; shipped caps), shared by the end-to-end tests.

    A long batch delay makes concurrent requests share a batch reliably.
    """
    from tests.servers import running_server

    settings = dict(batchSize=4, maxBatchDelay=400, handler={"runtime": "torch", "precision": "fp32"},
                    video={"minWorkers": 1, "maxWorkers": 1, "batchSize": 5, "maxBatchDelay": 400, "nice": 10})
    with running_server(tmp_path_factory.mktemp("serving"), tiny_checkpoint, SERVED_NAME, SERVED_VERSION, **settings) as running:
        yield running


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never `playwright install`), one per test module."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: make test installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


# The record store's tests (tests/test_records.py, tests/test_kept_media.py): each kind of store, a two-label model.
@pytest.fixture(scope="module")
def postgres_url():
    with postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.database)])
def store_url(request, tmp_path):
    """An empty, migrated store of each kind (PostgreSQL: a fresh schema state per test; one server per module)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = connect(url)
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS labels, record_media, records, alembic_version")
        engine.dispose()
    migrate(url)
    return url


@pytest.fixture(scope="module")
def two_label_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("records") / "checkpoint", tiny_config(id2label={0: "Real", 1: "Fake"}),
                                   seed=3, demo=False)
