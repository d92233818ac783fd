"""The trainer end to end: determinism, export layout, calibration and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.pipeline import TrainOptions, describe_data, split_by_request, train
from trainer.simulate import simulate_log


def train_into(repository: Path, log, **options) -> Path:
    data = describe_data(log, "simulator", [])
    return train(log, data, TrainOptions(repository=repository, **options))


def test_train_is_deterministic_for_a_seed(tmp_path, simulated_log, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")

    first = train_into(tmp_path / "a", simulated_log, seed=4)
    second = train_into(tmp_path / "b", simulated_log, seed=4)

    assert (first / "model.onnx").read_bytes() == (second / "model.onnx").read_bytes()
    assert (first / "manifest.json").read_text() == (
        second / "manifest.json"
    ).read_text()


def test_train_writes_the_next_version(tmp_path, simulated_log):
    small = simulated_log.head(3000)
    train_into(tmp_path, small)

    second = train_into(tmp_path, small)

    assert second == tmp_path / "watchtime" / "2"


def test_train_refuses_to_overwrite_a_version(tmp_path, simulated_log):
    small = simulated_log.head(3000)
    train_into(tmp_path, small, version=1)

    with pytest.raises(FileExistsError):
        train_into(tmp_path, small, version=1)


def test_manifest_records_data_metrics_and_parameters(manifest):
    assert manifest["format"] == 1
    assert manifest["variant"] == "weighted"
    assert manifest["training"]["data"]["rows"] == 30_000
    assert manifest["training"]["options"]["converged"] is True
    assert set(manifest["metrics"]) >= {
        "calibration_ratio",
        "calibration_by_decile",
        "xauc",
        "ndcg_at_10",
        "weighted_per_user_loss",
    }
    assert "video_id" in manifest["linear"]["weights"]


def test_manifest_declares_every_graph_input(manifest):
    names = {i["name"] for i in manifest["inputs"]}
    features = {f["name"] for f in manifest["feature_spec"]["features"]}

    assert names == features | {"candidate_request"}


def test_split_by_request_keeps_pages_whole(simulated_log):
    train_log, holdout = split_by_request(simulated_log, 0.2, seed=0)

    shared = set(train_log["request_id"]) & set(holdout["request_id"])

    assert shared == set()
    assert len(train_log) + len(holdout) == len(simulated_log)


def test_split_by_request_rejects_a_bad_fraction(simulated_log):
    with pytest.raises(ValueError, match="holdout fraction 1.5"):
        split_by_request(simulated_log, 1.5, seed=0)


def test_weighted_lr_calibrated_at_five_percent(tmp_path):
    # At click rate p the odds estimate E[T](1 + p) on average, so the mean
    # prediction should land within 10% of the true expected watch time.
    log = simulate_log(rows=200_000, click_rate=0.05, seed=21)

    directory = train_into(tmp_path, log)

    metrics = json.loads((directory / "manifest.json").read_text())["metrics"]
    assert metrics["truth"] == "expected_watch_time_s"
    assert 0.9 <= metrics["calibration_ratio"] <= 1.1


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_simulates_trains_and_evaluates(tmp_path):
    log_path = tmp_path / "log.csv"
    repository = tmp_path / "models"

    simulated = run_cli(
        "simulate", "--rows", "4000", "--seed", "2", "--out", str(log_path)
    )
    trained = run_cli(
        "train", "--log", str(log_path), "--model-repository", str(repository)
    )
    evaluated = run_cli(
        "evaluate",
        "--model",
        str(repository / "watchtime" / "1"),
        "--log",
        str(log_path),
    )

    assert simulated.returncode == 0, simulated.stderr
    assert trained.returncode == 0, trained.stderr
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["rows"] == 4000


def test_cli_reports_a_bad_click_rate(tmp_path):
    result = run_cli(
        "simulate", "--click-rate", "1.5", "--out", str(tmp_path / "log.csv")
    )

    assert result.returncode == 2
    assert "1.5" in result.stderr
