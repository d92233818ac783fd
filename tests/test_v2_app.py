"""The Open Inference Protocol endpoints in-process, in states a server rarely shows.

uvicorn runs the lifespan, which loads the model, before it accepts
connections, so a real server is never without a model. These tests call the
application through httpx's ASGI transport, without its lifespan to see the
probes before the model is loaded, and with a model whose manifest lacks its
tensor list to see an unexpected error.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings


def call(
    app: FastAPI, method: str, path: str, *, lifespan: bool = False, **options: Any
) -> httpx.Response:
    """Send one request to the application, inside its lifespan if asked."""

    async def send() -> httpx.Response:
        async with AsyncExitStack() as stack:
            if lifespan:
                await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://service")
            )
            return await client.request(method, path, **options)

    return anyio.run(send)


@pytest.fixture
def app(model_repository: Path) -> FastAPI:
    return create_app(Settings(model_repository=model_repository))


@pytest.mark.parametrize(
    "path",
    [
        "/v2/health/ready",
        "/v2/models/watchtime",
        "/v2/models/watchtime/ready",
        "/v2/models/watchtime/versions/1/ready",
    ],
)
def test_model_path_before_load_is_503(app, path):
    response = call(app, "GET", path)

    assert response.status_code == 503
    assert "the model is not loaded yet" in response.json()["error"]


def test_live_before_load_is_200(app):
    response = call(app, "GET", "/v2/health/live")

    assert response.status_code == 200


def test_server_metadata_before_load_is_200(app):
    response = call(app, "GET", "/v2")

    assert response.status_code == 200
    assert response.json()["extensions"] == ["binary_tensor_data"]


def test_infer_before_load_is_503(app):
    body = {"inputs": []}

    response = call(app, "POST", "/v2/models/watchtime/infer", json=body)

    assert response.status_code == 503
    assert "the model is not loaded yet" in response.json()["error"]


@pytest.fixture
def repository_without_tensor_list(model_dir: Path, tmp_path: Path) -> Path:
    """Return a copy of the model whose first input entry lacks its shape.

    The loader checks only the entries' names, so the model loads and serves
    /v1 while building its V2 metadata fails.
    """
    version_dir = tmp_path / "watchtime" / "1"
    shutil.copytree(model_dir, version_dir)
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["inputs"][0]["shape"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path


def test_unexpected_error_is_generic_500(repository_without_tensor_list, caplog):
    app = create_app(Settings(model_repository=repository_without_tensor_list))

    with caplog.at_level(logging.ERROR, logger="app.routes.v2"):
        response = call(app, "GET", "/v2/models/watchtime", lifespan=True)

    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert "KeyError" in caplog.text
