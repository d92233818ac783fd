"""`watchtime serve` and the dispatch of training commands, run as subprocesses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_helpers import (
    CLI_TIMEOUT_S,
    ROOT,
    find_free_port,
    run_cli,
    run_server,
    service_env,
)

pytest_plugins = ["service_fixtures"]

EXIT_USAGE = 2


@pytest.fixture
def repository_copy(model_repository: Path, tmp_path: Path) -> Path:
    """Return a writable copy of the trainer's model repository."""
    return Path(shutil.copytree(model_repository, tmp_path / "models"))


def serve(repository: Path, *arguments: str, **variables: str):
    return run_cli(
        "serve",
        "--port",
        str(find_free_port()),
        "--model-repository",
        str(repository),
        *arguments,
        **variables,
    )


def edit_manifest(repository: Path, edit) -> Path:
    path = repository / "watchtime" / "1" / "manifest.json"
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def test_serve_without_model_directory_fails(tmp_path):
    missing = tmp_path / "no-models"

    result = serve(missing)

    assert result.returncode == EXIT_USAGE
    assert str(missing) in result.stderr
    assert "not found" in result.stderr


def test_serve_with_corrupted_manifest_names_file(repository_copy):
    manifest_path = repository_copy / "watchtime" / "1" / "manifest.json"
    manifest_path.write_text('{"format": 1, "name": ', encoding="utf-8")

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert str(manifest_path) in result.stderr
    assert "not valid JSON" in result.stderr


@pytest.mark.parametrize(
    "text",
    ['{"junk": ' + "1" * 5000 + "}", '{"junk": ' + "[" * 100_000 + "]" * 100_000 + "}"],
    ids=["huge-integer", "deep-nesting"],
)
def test_serve_with_unparsable_manifest_names_file(repository_copy, text):
    manifest_path = repository_copy / "watchtime" / "1" / "manifest.json"
    manifest_path.write_text(text, encoding="utf-8")

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert f"{manifest_path} cannot be parsed" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_manifest_names_file(repository_copy):
    manifest_path = repository_copy / "watchtime" / "1" / "manifest.json"
    manifest_path.unlink()

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert f"{manifest_path} not found" in result.stderr


def test_serve_without_graph_names_file(repository_copy):
    graph_path = repository_copy / "watchtime" / "1" / "model.onnx"
    graph_path.unlink()

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert f"{graph_path} not found" in result.stderr


def test_serve_with_golden_mismatch_fails(repository_copy):
    def scale_first_golden(manifest: dict[str, Any]) -> None:
        outputs = manifest["golden"][0]["outputs"]
        outputs["expected_watch_time_s"] = [
            value * 1.01 for value in outputs["expected_watch_time_s"]
        ]

    manifest_path = edit_manifest(repository_copy, scale_first_golden)

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert f"{manifest_path}: golden[0]" in result.stderr
    assert "max relative error" in result.stderr


def test_serve_with_unknown_hash_fails(repository_copy):
    def rename_hash(manifest: dict[str, Any]) -> None:
        manifest["hash_algorithm"] = "md5-v0"

    edit_manifest(repository_copy, rename_hash)

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert "'md5-v0'" in result.stderr


def test_serve_with_invalid_port_variable_names_it():
    result = run_cli("serve", WATCHTIME_PORT="eighty")

    assert result.returncode == EXIT_USAGE
    assert "WATCHTIME_PORT='eighty'" in result.stderr
    assert "valid integer" in result.stderr


def test_serve_with_invalid_workers_option_names_it():
    result = run_cli("serve", "--workers", "0")

    assert result.returncode == EXIT_USAGE
    assert "--workers=0" in result.stderr
    assert "greater than or equal to 1" in result.stderr


def test_serve_with_several_models_asks_for_name(repository_copy):
    shutil.copytree(repository_copy / "watchtime", repository_copy / "watchtime-b")

    result = serve(repository_copy)

    assert result.returncode == EXIT_USAGE
    assert "WATCHTIME_MODEL_NAME" in result.stderr


def test_serve_with_two_workers_ranks(model_repository, tmp_path):
    body = {"candidates": [{"id": "v1"}, {"id": "v2"}]}

    with (
        run_server(
            model_repository, tmp_path / "server.log", "--workers", "2"
        ) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        responses = [client.post("/v1/rank", json=body) for _ in range(4)]

    assert [r.status_code for r in responses] == [200] * 4


def test_serve_takes_settings_from_environment(model_repository, tmp_path):
    with (
        run_server(
            model_repository, tmp_path / "server.log", WATCHTIME_MAX_CANDIDATES="7"
        ) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        description = client.get("/v1/model").json()
        response = client.post(
            "/v1/rank", json={"candidates": [{"id": i} for i in range(8)]}
        )

    assert description["max_candidates"] == 7
    assert response.status_code == 413


def test_serve_logs_spinning_off_by_default(server):
    log = server.log()

    assert "intra-op spinning off" in log


def test_serve_freezes_startup_objects(server):
    log = server.log()

    frozen = re.search(r"froze (\d+) start-up objects", log)

    assert frozen is not None
    assert int(frozen.group(1)) > 0


def test_serve_trims_the_heap_periodically(server):
    log = server.log()

    assert "returning free heap pages every 10 s" in log


def test_serve_logs_spinning_set_by_environment(model_repository, tmp_path):
    variables = {
        "WATCHTIME_INTRA_OP_THREADS": "2",
        "WATCHTIME_ONNXRUNTIME_SPINNING": "true",
    }

    with run_server(model_repository, tmp_path / "server.log", **variables) as server:
        log = server.log()

    assert "2 intra-op" in log
    assert "intra-op spinning on" in log


def test_app_factory_without_model_stops_uvicorn(tmp_path):
    missing = tmp_path / "no-models"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(find_free_port()),
    ]

    result = subprocess.run(
        command,
        cwd=ROOT,
        env=service_env(WATCHTIME_MODEL_REPOSITORY=str(missing)),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )

    assert result.returncode != 0
    assert f"model repository {missing} not found" in result.stderr


def test_training_command_dispatches_to_trainer():
    result = run_cli("simulate", "--help")

    assert result.returncode == 0
    assert "--rows" in result.stdout


def test_training_command_without_train_extra_explains():
    # Marking pandas as absent in sys.modules makes importing it fail with
    # ModuleNotFoundError, as in an installation without the train extra.
    script = (
        "import sys; sys.modules['pandas'] = None; "
        "from app.cli import main; sys.exit(main(['train', '--help']))"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )

    assert result.returncode == EXIT_USAGE
    assert "pip install 'watchtime-ranker[train]'" in result.stderr
    assert "pandas" in result.stderr
