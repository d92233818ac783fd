"""Dynamic batching with the trainer's real model: merged calls give the same scores."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from app.batching import Batcher, merge_tensors, split_outputs
from app.contract import CANDIDATE_REQUEST_INPUT, WATCH_TIME_OUTPUT
from app.decoding import parse_request_object
from app.model import load_model, locate_model

from service_helpers import run_server


@pytest.fixture(scope="module")
def model(model_repository):
    return load_model(locate_model(model_repository))


@pytest.fixture(scope="module")
def encoded(model, manifest):
    requests = [parse_request_object(g["request"]) for g in manifest["golden"]]
    return [model.encoder.encode([r]).tensors for r in requests]


def rows(tensors) -> int:
    return len(tensors[CANDIDATE_REQUEST_INPUT])


def test_merged_tensors_score_like_separate_calls(model, encoded):
    merged = merge_tensors(model.spec, encoded)

    parts = split_outputs(model.predict(merged), [rows(t) for t in encoded])

    for tensors, part in zip(encoded, parts, strict=True):
        expected = model.predict(tensors)[WATCH_TIME_OUTPUT]
        np.testing.assert_allclose(part[WATCH_TIME_OUTPUT], expected, rtol=1e-6)


def test_batcher_merges_concurrent_requests(model, encoded):
    sizes: list[int] = []
    lock = threading.Lock()

    def observe(count: int) -> None:
        with lock:
            sizes.append(count)

    batcher = Batcher(max_rows=10_000, max_delay_s=0.05, observe_rows=observe)
    jobs = encoded * 10
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda t: batcher.predict(model, t, rows(t)), jobs))
    batcher.close()

    for tensors, result in zip(jobs, results, strict=True):
        expected = model.predict(tensors)[WATCH_TIME_OUTPUT]
        np.testing.assert_allclose(result[WATCH_TIME_OUTPUT], expected, rtol=1e-6)
    assert len(sizes) < len(jobs)
    assert sum(sizes) == sum(rows(t) for t in jobs)


def test_batcher_splits_a_request_above_the_row_limit(model, encoded):
    sizes: list[int] = []
    batcher = Batcher(max_rows=3, max_delay_s=0.0, observe_rows=sizes.append)
    tensors = max(encoded, key=rows)

    result = batcher.predict(model, tensors, rows(tensors))
    batcher.close()

    expected = model.predict(tensors)[WATCH_TIME_OUTPUT]
    np.testing.assert_allclose(result[WATCH_TIME_OUTPUT], expected, rtol=1e-6)
    assert max(sizes) <= 3
    assert sum(sizes) == rows(tensors)


def test_batcher_passes_errors_to_the_waiting_request(model, encoded):
    batcher = Batcher(max_rows=100, max_delay_s=0.0, observe_rows=lambda _: None)
    broken = dict(encoded[0])
    broken["video_duration_s"] = broken["video_duration_s"].astype(np.float64)

    with pytest.raises(Exception, match="(?i)type"):
        batcher.predict(model, broken, rows(broken))
    batcher.close()


@pytest.mark.parametrize("batching", ["false", "true"])
def test_server_ranks_golden_request(model_repository, manifest, tmp_path, batching):
    golden = manifest["golden"][0]
    variables = {"WATCHTIME_BATCHING": batching}

    with run_server(model_repository, tmp_path / "log", **variables) as server:
        response = httpx.post(
            server.base_url + "/v1/rank", json=golden["request"], timeout=30
        )

    served = {
        item["id"]: item["expected_watch_time_s"] for item in response.json()["items"]
    }
    ids = [c["id"] for c in golden["request"]["candidates"]]
    expected = dict(zip(ids, golden["outputs"][WATCH_TIME_OUTPUT], strict=True))
    for candidate_id, value in served.items():
        assert value == pytest.approx(expected[candidate_id], rel=1e-5)
