"""Several replicas on one PostgreSQL record store: concurrent starts migrate it once, a label given through
one replica's review API is matched by another, both replicas' records are in one review list, and a purge
run by one leaves the other's recent records alone."""

from __future__ import annotations

import threading

import pytest

from deepfake_service.records import migrate, schema_revision
from deepfake_service.records.postgres import postgres

pytestmark = pytest.mark.database


@pytest.fixture(scope="module")
def shared_url():
    with postgres() as url:
        yield url


def test_replicas_starting_at_once_migrate_the_shared_store_one_after_the_other(shared_url):
    from handler.store import connect

    engine = connect(shared_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS labels, records, alembic_version")
    engine.dispose()
    gate, failures = threading.Barrier(4), []

    def start() -> None:
        gate.wait(timeout=60)
        try:
            migrate(shared_url)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(repr(exc))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert schema_revision(shared_url) is not None
