"""Hot reload under load, and invalid versions rejected while the old one serves.

Client threads rank without pause while admin reloads swap the served version
20 times. No request may fail, and each response must be scored entirely by
the one version it names.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest

from app.contract import WATCH_TIME_OUTPUT, FeatureSpec
from trainer.export import run_graph
from trainer.tensors import request_tensors

from service_helpers import RunningServer, add_version, run_server, sample, scrape

TOKEN = "reliability-admin-token-0123456789"
SWAPS = 20
CLIENTS = 4


def reload(server: RunningServer) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.post(server.base_url + "/v1/admin/reload", headers=headers, timeout=60)


def expected_scores(model_dir: Path, request: dict[str, Any]) -> dict[str, float]:
    """Score a request with onnxruntime on the trainer's tensors."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    outputs = run_graph(model_dir / "model.onnx", request_tensors(spec, request))
    ids = [c["id"] for c in request["candidates"]]
    return dict(zip(ids, outputs[WATCH_TIME_OUTPUT].tolist(), strict=True))


def rank_until_stopped(
    base_url: str, request: dict[str, Any], stop: threading.Event, answers: list
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post("/v1/rank", json=request)
                answers.append((response.status_code, response.json()))
            except httpx.TransportError as error:
                answers.append((None, repr(error)))


@pytest.fixture(scope="module")
def swap_run(model_dir, second_model, manifest, tmp_path_factory) -> dict[str, Any]:
    """Return the responses of clients that ranked during 20 version swaps."""
    root = tmp_path_factory.mktemp("swaps") / "models"
    shutil.copytree(model_dir, root / "watchtime" / "1")
    request = manifest["golden"][0]["request"]
    stop = threading.Event()
    answers: list = []
    reloads: list[dict[str, Any]] = []

    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    log_path = root.parent / "server.log"
    with run_server(root, log_path, "--reload-interval", "0", **variables) as server:
        clients = [
            threading.Thread(
                target=rank_until_stopped,
                args=(server.base_url, request, stop, answers),
            )
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()

        for swap in range(SWAPS):
            if swap % 2 == 0:
                add_version(root, second_model, 2)
            else:
                shutil.rmtree(root / "watchtime" / "2")
            reloads.append(reload(server).json())
        stop.set()
        for client in clients:
            client.join(timeout=30)

    expected = {
        1: expected_scores(model_dir, request),
        2: expected_scores(second_model, request),
    }
    return {"answers": answers, "reloads": reloads, "expected": expected}


def test_swaps_load_each_new_version(swap_run):
    results = [(r["result"], r["version"]) for r in swap_run["reloads"]]

    assert results == [("loaded", 2), ("loaded", 1)] * (SWAPS // 2)


def test_swaps_fail_no_request(swap_run):
    statuses = [status for status, _ in swap_run["answers"]]

    assert len(statuses) > SWAPS
    assert set(statuses) == {200}


def test_swaps_serve_both_versions(swap_run):
    versions = {body["model"]["version"] for _, body in swap_run["answers"]}

    assert versions == {1, 2}


def test_swaps_score_with_named_version(swap_run):
    for _, body in swap_run["answers"]:
        scores = swap_run["expected"][body["model"]["version"]]
        served = {i["id"]: i["expected_watch_time_s"] for i in body["items"]}
        expected = [scores[candidate_id] for candidate_id in served]

        np.testing.assert_allclose(list(served.values()), expected, rtol=1e-5)


def rename_graph_input(graph_path: Path, old: str, new: str) -> None:
    """Rewrite a graph so that its input `old` is called `new`."""
    model = onnx.load(str(graph_path))
    for graph_input in model.graph.input:
        if graph_input.name == old:
            graph_input.name = new
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if name == old:
                node.input[position] = new
    onnx.save(model, str(graph_path))


def test_reload_rejects_a_graph_with_wrong_inputs(repository, model_dir, tmp_path):
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    arguments = ("--reload-interval", "0")
    with run_server(repository, tmp_path / "log", *arguments, **variables) as server:
        broken = add_version(repository, model_dir, 2)
        rename_graph_input(broken / "model.onnx", "category", "genre")
        response = reload(server)
        served = httpx.post(
            server.base_url + "/v1/rank", json={"candidates": [{"id": "v1"}]}
        ).json()["model"]["version"]
        with httpx.Client(base_url=server.base_url) as client:
            rejected = sample(
                scrape(client), "watchtime_model_reloads_total", result="rejected"
            )
        log = server.log()

    message = response.json()["error"]["message"]
    assert response.status_code == 422
    assert "lacks the inputs ['category']" in message
    assert served == 1
    assert rejected == 1
    assert "rejected model update, still serving version 1" in log
