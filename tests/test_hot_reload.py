"""Hot reload against real server processes: polling, admin reload, rejection."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.contract import WATCH_TIME_OUTPUT, FeatureSpec
from trainer.export import run_graph
from trainer.tensors import request_tensors

from service_helpers import RunningServer, add_version, run_server, sample, scrape

TOKEN = "test-admin-token-0123456789"
WAIT_S = 30.0


def truncate_graph(directory: Path) -> None:
    graph = directory / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT_S} s waiting for {what}")


def scrape_server(server: RunningServer) -> dict:
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        return scrape(client)


def rejected_reloads(server: RunningServer) -> float:
    samples = scrape_server(server)
    return sample(samples, "watchtime_model_reloads_total", result="rejected")


def served_version(server: RunningServer) -> int:
    return httpx.get(server.base_url + "/v1/model", timeout=5).json()["version"]


def reload(server: RunningServer, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(server.base_url + "/v1/admin/reload", headers=headers, timeout=30)


def test_polling_serves_a_new_version(repository, second_model, tmp_path):
    with run_server(repository, tmp_path / "log", "--reload-interval", "0.2") as server:
        add_version(repository, second_model, 2)

        wait_for(lambda: served_version(server) == 2, "version 2")


def test_polling_rejects_a_truncated_graph(repository, model_dir, tmp_path):
    with run_server(repository, tmp_path / "log", "--reload-interval", "0.2") as server:
        add_version(repository, model_dir, 2, truncate_graph)

        wait_for(lambda: rejected_reloads(server) > 0, "a rejected reload")
        assert served_version(server) == 1
        assert "rejected model update" in server.log()


def add_huge_integer(directory: Path) -> None:
    # json.loads raises ValueError for integers of more than 4300 digits.
    manifest = directory / "manifest.json"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text('{"junk": ' + "1" * 5000 + ", " + text[1:], encoding="utf-8")


def test_polling_survives_an_unparsable_manifest(
    repository, model_dir, second_model, tmp_path
):
    with run_server(repository, tmp_path / "log", "--reload-interval", "0.2") as server:
        add_version(repository, model_dir, 2, add_huge_integer)

        wait_for(lambda: rejected_reloads(server) > 0, "a rejected reload")
        shutil.rmtree(repository / "watchtime" / "2")
        add_version(repository, second_model, 3)
        wait_for(lambda: served_version(server) == 3, "version 3")

        assert "cannot be parsed" in server.log()


def test_admin_reload_is_off_without_token(repository, tmp_path):
    with run_server(repository, tmp_path / "log") as server:
        response = reload(server)

    assert response.status_code == 404
    assert "WATCHTIME_ADMIN_TOKEN" in response.json()["error"]["message"]


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
def test_admin_reload_rejects_a_wrong_token(repository, tmp_path, token):
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    with run_server(repository, tmp_path / "log", **variables) as server:
        response = reload(server, token)
        log = server.log()

    assert response.status_code == 401
    assert TOKEN not in log


def test_admin_reload_serves_a_new_version(repository, second_model, tmp_path):
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    arguments = ("--reload-interval", "0")
    with run_server(repository, tmp_path / "log", *arguments, **variables) as server:
        add_version(repository, second_model, 2)
        response = reload(server)

    assert response.status_code == 200
    assert response.json() == {"result": "loaded", "name": "watchtime", "version": 2}


def test_admin_reload_rejects_a_golden_mismatch(repository, model_dir, tmp_path):
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    arguments = ("--reload-interval", "0")
    with run_server(repository, tmp_path / "log", *arguments, **variables) as server:
        broken = add_version(repository, model_dir, 2)
        manifest = broken / "manifest.json"
        text = manifest.read_text()
        manifest.write_text(text.replace('"logit": [', '"logit": [1e6, ', 1))
        response = reload(server)
        repeated = reload(server)
        version_after = served_version(server)

    assert response.status_code == 422
    assert "golden" in response.json()["error"]["message"]
    assert repeated.status_code == 422
    assert "unchanged since it was rejected" in repeated.json()["error"]["message"]
    assert "golden" in repeated.json()["error"]["message"]
    assert version_after == 1


def test_admin_reload_reaches_every_worker(repository, second_model, tmp_path):
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    arguments = ("--workers", "2", "--reload-interval", "0")
    with run_server(repository, tmp_path / "log", *arguments, **variables) as server:
        add_version(repository, second_model, 2)
        reload(server)
        time.sleep(2.5)

        answers = [
            httpx.get(server.base_url + "/v1/model", timeout=5).json()
            for _ in range(40)
        ]
        info = scrape_server(server)

    assert {a["version"] for a in answers} == {2}
    assert len({a["worker_pid"] for a in answers}) == 2
    serving = [
        dict(labels)["version"]
        for (name, labels), value in info.items()
        if name == "watchtime_model_info" and value == 1
    ]
    assert serving == ["2", "2"]


def expected_scores(model_dir: Path, request: dict) -> dict[str, float]:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    outputs = run_graph(model_dir / "model.onnx", request_tensors(spec, request))
    ids = [c["id"] for c in request["candidates"]]
    return dict(zip(ids, outputs[WATCH_TIME_OUTPUT].tolist(), strict=True))


def test_each_response_is_scored_by_the_version_it_names(
    repository, model_dir, second_model, manifest, tmp_path
):
    request = manifest["golden"][0]["request"]
    expected = {
        1: expected_scores(model_dir, request),
        2: expected_scores(second_model, request),
    }
    responses: list[dict] = []
    stop = threading.Event()
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    arguments = ("--reload-interval", "0")

    def send_requests(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                responses.append(client.post("/v1/rank", json=request).json())

    with run_server(repository, tmp_path / "log", *arguments, **variables) as server:
        sender = threading.Thread(target=send_requests, args=(server.base_url,))
        sender.start()
        for _ in range(5):
            add_version(repository, second_model, 2)
            reload(server)
            shutil.rmtree(repository / "watchtime" / "2")
            reload(server)
        stop.set()
        sender.join(timeout=30)

    versions = {r["model"]["version"] for r in responses}
    assert versions == {1, 2}
    for response in responses:
        scores = expected[response["model"]["version"]]
        served = {
            item["id"]: item["expected_watch_time_s"] for item in response["items"]
        }
        for candidate_id, score in served.items():
            np.testing.assert_allclose(score, scores[candidate_id], rtol=1e-5)


def test_broken_repository_is_counted_once(repository, model_dir, tmp_path):
    with run_server(repository, tmp_path / "log", "--reload-interval", "0.2") as server:
        shutil.rmtree(repository / "watchtime")

        wait_for(lambda: rejected_reloads(server) > 0, "a rejected reload")
        time.sleep(1.0)
        counted = rejected_reloads(server)
        (repository / "watchtime").mkdir()
        add_version(repository, model_dir, 2)
        wait_for(lambda: served_version(server) == 2, "version 2")

    assert counted == 1
