"""Session fixtures: a simulated log and models trained on it by the trainer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trainer.mlp import NetworkOptions
from trainer.outputs import VARIANTS
from trainer.pipeline import TrainOptions, describe_data, train
from trainer.simulate import simulate_log

MODEL_NAME = "watchtime"
VARIANT_LOG_ROWS = 4000
"""Rows of the log each variant is trained on: enough to export, not to rank."""


@pytest.fixture(scope="session")
def simulated_log() -> pd.DataFrame:
    """Return a small simulated log, large enough to fit a usable model."""
    return simulate_log(rows=30_000, click_rate=0.05, seed=11)


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, simulated_log) -> Path:
    """Return a model repository holding `watchtime/1` made by the trainer."""
    repository = tmp_path_factory.mktemp("models")
    data = describe_data(simulated_log, "simulator", [])
    train(simulated_log, data, TrainOptions(repository=repository, name=MODEL_NAME))
    return repository


@pytest.fixture(scope="session")
def model_dir(model_repository: Path) -> Path:
    """Return the version directory of the trained model."""
    return model_repository / MODEL_NAME / "1"


@pytest.fixture(scope="session")
def manifest(model_dir: Path) -> dict[str, Any]:
    """Return the trained model's manifest."""
    return json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def second_model(tmp_path_factory: pytest.TempPathFactory, simulated_log) -> Path:
    """Return a model version trained with another seed, so its scores differ."""
    repository = tmp_path_factory.mktemp("second")
    data = describe_data(simulated_log, "simulator", [])
    options = TrainOptions(repository=repository, name=MODEL_NAME, seed=5)
    return train(simulated_log, data, options)


@pytest.fixture
def repository(tmp_path: Path, model_dir: Path) -> Path:
    """Return a fresh repository that contains only version 1."""
    root = tmp_path / "models"
    shutil.copytree(model_dir, root / MODEL_NAME / "1")
    return root


@pytest.fixture(scope="session")
def variant_model_dirs(
    tmp_path_factory: pytest.TempPathFactory, simulated_log
) -> dict[str, Path]:
    """Return a version directory per training variant, each in its own repository.

    The network is small and trains for two epochs, so the fixture stays fast.
    """
    log = simulated_log.head(VARIANT_LOG_ROWS)
    data = describe_data(log, "simulator", [])
    directories = {}
    for index, variant in enumerate(VARIANTS):
        repository = tmp_path_factory.mktemp(f"variant{index}")
        options = TrainOptions(
            repository=repository,
            name=MODEL_NAME,
            seed=3,
            variant=variant,
            network=NetworkOptions(hidden=(16, 8), max_epochs=2),
        )
        directories[variant] = train(log, data, options)
    return directories
