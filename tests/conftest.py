"""Session fixtures: a simulated log and a model trained on it by the trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trainer.pipeline import TrainOptions, describe_data, train
from trainer.simulate import simulate_log

MODEL_NAME = "watchtime"


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
