"""Scoring a large request does not block the server's event loop."""

from __future__ import annotations

import threading
import time

import httpx

from service_helpers import run_server

CANDIDATES = 5000


def large_request(manifest) -> dict:
    template = manifest["golden"][0]["request"]
    base = template["candidates"][0]["features"]
    candidates = [
        {"id": f"v{i}", "features": base | {"video_duration_s": float(30 + i)}}
        for i in range(CANDIDATES)
    ]
    return {"context": template["context"], "candidates": candidates}


def test_healthz_answers_while_a_large_request_is_scored(
    model_repository, manifest, tmp_path
):
    body = large_request(manifest)
    rank_window: dict[str, float] = {}
    probes: list[tuple[float, float]] = []

    with run_server(model_repository, tmp_path / "log") as server:

        def rank() -> None:
            rank_window["start"] = time.monotonic()
            httpx.post(server.base_url + "/v1/rank", json=body, timeout=60)
            rank_window["end"] = time.monotonic()

        sender = threading.Thread(target=rank)
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            sender.start()
            while sender.is_alive():
                started = time.monotonic()
                client.get("/healthz")
                probes.append((started, time.monotonic()))
        sender.join()

    during = [
        p for p in probes if rank_window["start"] < p[0] and p[1] < rank_window["end"]
    ]
    assert len(during) >= 3
