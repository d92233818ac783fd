"""The application object in-process: states a real server never shows for long.

uvicorn runs the lifespan before it accepts connections, so a running server
is always ready. These tests call the application through httpx's ASGI
transport before and without its lifespan, to see the not-ready responses,
and with a route that fails, to see the handling of unexpected errors.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from app.errors import ModelLoadError
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
def settings(model_repository: Path) -> Settings:
    return Settings(model_repository=model_repository)


def test_readyz_before_lifespan_returns_503(settings):
    response = call(create_app(settings), "GET", "/readyz")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "model_not_ready"


def test_rank_before_lifespan_returns_503(settings):
    body = {"candidates": [{"id": "v1"}]}

    response = call(create_app(settings), "POST", "/v1/rank", json=body)

    assert response.status_code == 503


def test_healthz_before_lifespan_returns_200(settings):
    response = call(create_app(settings), "GET", "/healthz")

    assert response.status_code == 200


def test_readyz_in_lifespan_returns_200(settings):
    response = call(create_app(settings), "GET", "/readyz", lifespan=True)

    assert response.status_code == 200


def test_lifespan_without_model_raises_load_error(tmp_path):
    app = create_app(Settings(model_repository=tmp_path / "missing"))

    with pytest.raises(ModelLoadError, match="missing not found"):
        call(app, "GET", "/healthz", lifespan=True)


def test_two_apps_keep_separate_metrics(settings):
    first = create_app(settings)
    second = create_app(settings)
    call(first, "GET", "/healthz")

    text = call(second, "GET", "/metrics").text

    assert 'endpoint="healthz"' not in text


def test_unexpected_error_returns_generic_500(settings, caplog):
    app = create_app(settings)

    @app.get("/v1/fail")
    def fail() -> None:
        raise RuntimeError("secret internal detail")

    with caplog.at_level(logging.ERROR):
        response = call(app, "GET", "/v1/fail", lifespan=True)

    tracebacks = [r for r in caplog.records if r.exc_info]
    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "internal_error", "message": "internal server error"}
    }
    assert "secret" not in response.text
    assert len(tracebacks) == 1
