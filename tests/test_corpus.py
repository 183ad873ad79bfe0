"""Every corpus case against a real TorchServe: predictions for odd-but-valid images, JSON 4xx for the rest,
the worker never restarted, and bad cases mixed into batches never costing their batch-mates."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from deepfake_service.project import handler_options
from tests.corpus import Case, build_corpus, predictable_cases
from tests.servers import batch_logged, batches, worker_pids
from tests.tiny import SERVED_NAME as NAME

TIMEOUT = 60

# The test server runs the shipped handler caps (tests/servers.py overrides only runtime and precision).
SHIPPED = handler_options()


def corpus(server) -> list[Case]:
    return build_corpus(SHIPPED.max_image_bytes, SHIPPED.max_image_pixels, int(server.properties["max_request_size"]))


def send(server, case: Case) -> requests.Response:
    url = f"{server.inference_url}/predictions/{NAME}"
    if case.form_field is None:
        return requests.post(url, data=case.body, headers={**server.headers(), "Content-Type": case.content_type}, timeout=TIMEOUT)
    files = {case.form_field: ("upload", case.body, case.content_type)} if case.form_field else None
    return requests.post(url, files=files, data=case.form_extra or None, headers=server.headers(), timeout=TIMEOUT)


def check(case: Case, answer: requests.Response) -> None:
    assert answer.status_code == case.status, f"{case.name}: {answer.status_code} {answer.text[:300]}"
    if case.status == 200:
        assert "label" in answer.json(), case.name
    elif case.error:
        body = answer.json()
        assert body["error"] == case.error and body["detail"], f"{case.name}: {body}"
        assert "Traceback" not in answer.text


def test_corpus_has_at_least_30_cases(server):
    assert len(corpus(server)) >= 30


def test_every_corpus_case_gets_its_expected_answer_and_the_worker_survives(server):
    pids = worker_pids(server, NAME)
    failures = []
    for case in corpus(server):
        try:
            check(case, send(server, case))
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)
    assert worker_pids(server, NAME) == pids


def test_bad_cases_mixed_into_batches_do_not_fail_good_ones(server):
    """Groups of 4 (the test server's batchSize) sent at once: two good, two bad. Whether a group meets in
    one batch depends on when each request arrives, and some bad ones never reach the worker (TorchServe
    refuses a body over max_request_size itself), so it is checked over all groups: at least one batch
    mixed good and bad requests."""
    good = predictable_cases()
    bad = [c for c in corpus(server) if c.status != 200]
    groups = [[good[i % len(good)], bad[i], good[(i + 7) % len(good)], bad[(i + 1) % len(bad)]] for i in range(0, len(bad), 2)]
    since = len(batches(server))
    for group in groups:
        gate = threading.Barrier(len(group))

        def fire(case):
            gate.wait(timeout=TIMEOUT)
            return send(server, case)

        with ThreadPoolExecutor(max_workers=len(group)) as pool:
            answers = list(pool.map(fire, group))
        for case, answer in zip(group, answers):
            check(case, answer)
    assert batch_logged(server, since, lambda n, rejected: 0 < rejected < n), batches(server)[since:]
