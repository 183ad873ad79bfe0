"""The seeded mutation fuzz (tests/fuzz.py) through the shared real TorchServe, four requests at a time so
bad files share batches with each other: never a 5xx, every 4xx a JSON object naming the problem, and the
image and video workers are the same processes at the end."""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import requests

from handler.video import container_format
from tests.fuzz import cases
from tests.servers import worker_pids
from tests.tiny import SERVED_NAME as NAME

TIMEOUT = 120


def test_five_hundred_mutated_files_never_get_a_5xx_or_cost_a_worker(server):
    found = cases()
    assert len(found) >= 500
    registrations = (NAME, f"{NAME}-video")
    pids = {name: worker_pids(server, name) for name in registrations}
    session = requests.Session()

    def send(case: tuple[str, bytes]) -> tuple[str, requests.Response]:
        name, body = case
        model = f"{NAME}-video" if container_format(body) else NAME  # as the page and score route them
        url = f"{server.inference_url}/predictions/{model}"
        return name, session.post(url, data=body, headers={**server.headers(), "Content-Type": "application/octet-stream"},
                                  timeout=TIMEOUT)

    problems, statuses = [], collections.Counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name, answer in pool.map(send, found):
            statuses[answer.status_code] += 1
            if answer.status_code >= 500:
                problems.append(f"{name}: {answer.status_code} {answer.text[:300]}")
            elif answer.status_code != 200:
                try:
                    body = answer.json()
                    assert isinstance(body, dict) and body["error"] and body["detail"]
                except (ValueError, KeyError, AssertionError):
                    problems.append(f"{name}: {answer.status_code} without a JSON error: {answer.text[:200]}")
    print(f"fuzz: {len(found)} cases, statuses {dict(sorted(statuses.items()))}")
    assert not problems, "\n".join(problems)
    assert {name: worker_pids(server, name) for name in registrations} == pids
    assert statuses[200] and sum(n for status, n in statuses.items() if 400 <= status < 500)  # both outcomes exercised
