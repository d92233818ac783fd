"""Security defaults against real servers: admin access and paths in requests.

No request can make the service read a file or a model outside its
repository: model names in V2 paths are compared with the served name and
never joined to a path, and the reload endpoint takes nothing from the request.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from service_helpers import RunningServer, run_server

pytest_plugins = ["service_fixtures"]

TOKEN = "security-admin-token-0123456789"


@pytest.fixture(scope="module")
def admin_server(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningServer:
    """Return a server with admin endpoints on, over a copy of the repository."""
    root = tmp_path_factory.mktemp("admin") / "models"
    shutil.copytree(model_dir, root / "watchtime" / "1")
    variables = {"WATCHTIME_ADMIN_TOKEN": TOKEN}
    arguments = ("--reload-interval", "0")
    with run_server(root, root.parent / "server.log", *arguments, **variables) as run:
        yield run


def raw_get(base_url: str, raw_path: str) -> httpx.Response:
    """GET a path exactly as written, without the client normalising dots."""
    address = urlsplit(base_url)
    url = httpx.URL(scheme="http", host=address.hostname, port=address.port)
    request = httpx.Request("GET", url.copy_with(raw_path=raw_path.encode("ascii")))
    with httpx.Client(timeout=10) as client:
        return client.send(request)


def test_admin_reload_off_without_token_setting(client):
    response = client.post(
        "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "admin_disabled"


@pytest.mark.parametrize(
    "authorization",
    [None, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer"],
)
def test_admin_reload_rejects_anything_but_the_token(admin_server, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = httpx.post(admin_server.base_url + "/v1/admin/reload", headers=headers)

    assert response.status_code == 401


def test_admin_reload_ignores_the_token_in_a_query(admin_server):
    url = admin_server.base_url + f"/v1/admin/reload?token={TOKEN}"

    response = httpx.post(url)

    assert response.status_code == 401


def test_admin_reload_takes_no_path_from_the_request(admin_server, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "watchtime" / "9").mkdir(parents=True)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"model_repository": str(elsewhere), "model_version": 9}

    response = httpx.post(
        admin_server.base_url + f"/v1/admin/reload?model_repository={elsewhere}",
        json=body,
        headers=headers,
    )

    assert response.status_code == 200
    assert response.json() == {"result": "unchanged", "name": "watchtime", "version": 1}


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v2/models/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v2/models/%2e%2e/ready",
        "/v2/models/%2Fetc%2Fpasswd/ready",
        "/v2/models/watchtime/versions/..%2F1/ready",
        "/v2/models/watchtime/versions/1%2F..%2F..%2F2",
        "/v2/models/watchtime%00/ready",
        "/v2/models/../../etc/passwd",
    ],
)
def test_v2_foreign_model_path_not_found(server, raw_path):
    response = raw_get(server.base_url, raw_path)

    assert response.status_code == 404


def test_v2_served_model_path_found(server):
    response = raw_get(server.base_url, "/v2/models/watchtime/versions/1/ready")

    assert response.status_code == 200


def test_rank_rejects_a_field_that_names_a_model(client):
    body = {"model": "/etc/passwd", "candidates": [{"id": "v1"}]}

    response = client.post("/v1/rank", json=body)

    error = response.json()["error"]
    assert response.status_code == 422
    assert error["field"] == "model"
