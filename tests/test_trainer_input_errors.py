"""The trainer CLI rejects bad logs, options and models with one-line messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from app.contract import HASH_ALGORITHM, WATCH_TIME_OUTPUT
from trainer.cli import main
from trainer.export import ExportError, check_parity, write_model
from trainer.simulate import simulate_log

EXIT_USAGE = 2
BAD_ROW = 2
"""Position of the altered row in a bad log, which messages call data row 3."""

KUAIRAND_LOG_HEADER = "user_id,video_id,time_ms,is_click,play_time_ms,duration_ms,tab"


@pytest.fixture(scope="module")
def small_log() -> pd.DataFrame:
    """Return a simulated log of a few pages with many clicks."""
    return simulate_log(rows=400, click_rate=0.3, seed=5)


@pytest.fixture
def log_path(tmp_path: Path, small_log: pd.DataFrame) -> Path:
    """Write the small log unchanged and return its path."""
    path = tmp_path / "log.csv"
    small_log.to_csv(path, index=False)
    return path


def write_bad_log(directory: Path, log: pd.DataFrame, **values: object) -> Path:
    """Write `log` with the given column values at BAD_ROW, bypassing all checks."""
    bad = log.astype(object)
    for column, value in values.items():
        bad.loc[BAD_ROW, column] = value
    path = directory / "bad.csv"
    bad.to_csv(path, index=False)
    return path


def watchtime(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    """Run the trainer CLI in this process and return its exit code and stderr."""
    try:
        code = main(list(arguments))
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def train(capsys, log: Path, repository: Path, *options: str) -> tuple[int, str]:
    arguments = ["--log", str(log), "--model-repository", str(repository)]
    return watchtime(capsys, "train", *arguments, *options)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"clicked": 2}, "column 'clicked' has 2 in data row 3; expected 0 or 1"),
        ({"clicked": 0.5}, "'clicked' cannot be read, it has 0.5 in data row 3"),
        ({"clicked": "yes"}, "it has 'yes' in data row 3; expected a whole number"),
        ({"watch_time_s": -1.0}, "'watch_time_s' has -1.0 in data row 3; expected a"),
        ({"watch_time_s": np.nan}, "'watch_time_s' has no value in data row 3"),
        ({"video_age_days": np.inf}, "'video_age_days' has inf in data row 3"),
        ({"video_duration_s": np.nan}, "'video_duration_s' has no value in data row 3"),
        ({"video_duration_s": 1e300}, "'video_duration_s' has 1e+300 in data row 3"),
        ({"watch_time_s": 1e300}, "'watch_time_s' has 1e+300 in data row 3"),
        ({"previous_impressions": 1e30}, "'previous_impressions' cannot be read"),
        ({"video_id": ""}, "column 'video_id' has 1 missing values"),
        (
            {"clicked": 0, "watch_time_s": 12.0},
            "'watch_time_s' has 12.0 in data row 3; expected 0 on rows with clicked 0",
        ),
    ],
)
def test_train_names_first_bad_value(capsys, tmp_path, small_log, values, message):
    bad_log = write_bad_log(tmp_path, small_log, **values)

    code, stderr = train(capsys, bad_log, tmp_path / "models")

    assert code == EXIT_USAGE
    assert message in stderr
    assert not (tmp_path / "models").exists()


def test_train_error_is_one_line(capsys, tmp_path, small_log):
    bad_log = write_bad_log(tmp_path, small_log, clicked=7)

    _, stderr = train(capsys, bad_log, tmp_path / "models")

    assert stderr.count("\n") == 1
    assert stderr.startswith("watchtime train: ")


@pytest.mark.parametrize(
    ("rows", "message"),
    [(0, "the log has no rows"), (1, "needs at least 2 pages")],
    ids=["header-only", "one-row"],
)
def test_train_rejects_tiny_log(capsys, tmp_path, small_log, rows, message):
    path = tmp_path / "tiny.csv"
    small_log.head(rows).to_csv(path, index=False)

    code, stderr = train(capsys, path, tmp_path / "models")

    assert code == EXIT_USAGE
    assert message in stderr


def test_train_rejects_log_without_watched_clicks(capsys, tmp_path, small_log):
    unwatched = small_log.assign(clicked=0, watch_time_s=0.0)
    path = tmp_path / "unwatched.csv"
    unwatched.to_csv(path, index=False)

    code, stderr = train(capsys, path, tmp_path / "models")

    assert code == EXIT_USAGE
    assert "no click with watch_time_s > 0" in stderr


def test_train_rejects_log_that_is_not_text(capsys, tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x01" * 64)

    code, stderr = train(capsys, path, tmp_path / "models")

    assert code == EXIT_USAGE
    assert f"log {path} is not UTF-8 text" in stderr


def test_train_rejects_empty_file(capsys, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")

    code, stderr = train(capsys, path, tmp_path / "models")

    assert code == EXIT_USAGE
    assert f"log {path} is empty" in stderr


def test_train_rejects_directory_as_log(capsys, tmp_path):
    code, stderr = train(capsys, tmp_path, tmp_path / "models")

    assert code == EXIT_USAGE
    assert f"--log {tmp_path} is a directory" in stderr


def test_train_rejects_missing_log(capsys, tmp_path):
    missing = tmp_path / "missing.csv"

    code, stderr = train(capsys, missing, tmp_path / "models")

    assert code == EXIT_USAGE
    assert f"--log {missing} not found" in stderr


def test_trainer_process_prints_one_line(tmp_path):
    command = [sys.executable, "-m", "trainer", "train", "--log", str(tmp_path)]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1
    assert "is a directory" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--l2", "0", "argument --l2: invalid value '0'; use a number greater than 0"),
        ("--l2", "nan", "argument --l2: invalid value 'nan'; use a number greater"),
        ("--seed", "-1", "invalid seed '-1'; use a whole number from 0 to 4294967295"),
        ("--version", "0", "invalid version '0'; use a whole number of 1 or more"),
        ("--version", "-3", "invalid version '-3'; use a whole number of 1 or more"),
        ("--name", "../x", "invalid model name '../x'; use letters, digits"),
        ("--name", ".hidden", "invalid model name '.hidden'"),
        ("--name", "a/b", "invalid model name 'a/b'"),
        ("--max-iter", "0", "argument --max-iter: invalid value '0'; use a whole"),
        ("--max-iter", "-1", "argument --max-iter: invalid value '-1'"),
        ("--max-epochs", "0", "argument --max-epochs: invalid value '0'"),
    ],
)
def test_train_explains_valid_range(capsys, log_path, option, value, message):
    repository = log_path.parent / "models"

    code, stderr = train(capsys, log_path, repository, option, value)

    assert code == EXIT_USAGE
    assert message in stderr
    assert stderr.count("\n") == 1


def test_train_keeps_name_inside_repository(capsys, log_path):
    repository = log_path.parent / "models"

    train(capsys, log_path, repository, "--name", "../escaped")

    assert not (log_path.parent / "escaped").exists()


def test_simulate_explains_seed_range(capsys, tmp_path):
    out = str(tmp_path / "log.csv")

    code, stderr = watchtime(capsys, "simulate", "--seed", "-1", "--out", out)

    assert code == EXIT_USAGE
    assert "use a whole number from 0 to 4294967295" in stderr


def test_train_checks_version_before_reading_log(capsys, tmp_path, small_log):
    # The log is invalid, so only a check made before reading it can report
    # the taken version.
    (tmp_path / "models" / "watchtime" / "4").mkdir(parents=True)
    bad_log = write_bad_log(tmp_path, small_log, clicked=2)

    code, stderr = train(capsys, bad_log, tmp_path / "models", "--version", "4")

    assert code == EXIT_USAGE
    assert "watchtime/4 already exists" in stderr


def write_kuairand(directory: Path, log_rows: list[str]) -> list[str]:
    """Write a KuaiRand log and side tables and return the train options for them."""
    log = directory / "kuairand_log.csv"
    log.write_text("\n".join([KUAIRAND_LOG_HEADER, *log_rows]) + "\n")
    users = directory / "users.csv"
    users.write_text("user_id\n1\n")
    videos = directory / "videos.csv"
    videos.write_text("video_id,author_id,upload_dt\n10,100,2022-04-01\n")
    return [
        "--kuairand-log",
        str(log),
        "--kuairand-users",
        str(users),
        "--kuairand-videos",
        str(videos),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,10,1649000000000,1,5000,9000,1.5", "column 'tab' has 1.5 in data row 2"),
        (
            "1,10,1649000000000,1,-5,9000,1",
            "column 'play_time_ms' has -5 in data row 2",
        ),
        ("1,10,1649000000000,1,inf,9000,1", "'play_time_ms' has 1 values that are not"),
    ],
)
def test_train_names_bad_kuairand_value(capsys, tmp_path, row, message):
    good_row = "1,10,1648990000000,0,0,9000,1"
    options = write_kuairand(tmp_path, [good_row, row])
    repository = ["--model-repository", str(tmp_path / "models")]

    code, stderr = watchtime(capsys, "train", *options, *repository)

    assert code == EXIT_USAGE
    assert message in stderr


def test_train_rejects_directory_as_kuairand_table(capsys, tmp_path):
    options = write_kuairand(tmp_path, ["1,10,1649000000000,1,5000,9000,1"])
    options[options.index("--kuairand-videos") + 1] = str(tmp_path)
    repository = ["--model-repository", str(tmp_path / "models")]

    code, stderr = watchtime(capsys, "train", *options, *repository)

    assert code == EXIT_USAGE
    assert f"--kuairand-videos {tmp_path} is a directory" in stderr


def evaluate(capsys, model: Path, log: Path) -> tuple[int, str]:
    return watchtime(capsys, "evaluate", "--model", str(model), "--log", str(log))


def test_evaluate_rejects_missing_model(capsys, tmp_path, log_path):
    missing = tmp_path / "models" / "watchtime" / "1"

    code, stderr = evaluate(capsys, missing, log_path)

    assert code == EXIT_USAGE
    assert f"--model {missing} is not a directory" in stderr


def test_evaluate_rejects_model_without_graph(capsys, tmp_path, model_dir, log_path):
    copy = shutil.copytree(model_dir, tmp_path / "copy" / "1")
    (copy / "model.onnx").unlink()

    code, stderr = evaluate(capsys, copy, log_path)

    assert code == EXIT_USAGE
    assert f"{copy / 'model.onnx'} not found" in stderr


def test_evaluate_rejects_broken_manifest(capsys, tmp_path, model_dir, log_path):
    copy = shutil.copytree(model_dir, tmp_path / "copy" / "1")
    (copy / "manifest.json").write_text('{"format": 1')

    code, stderr = evaluate(capsys, copy, log_path)

    assert code == EXIT_USAGE
    assert "manifest.json is not valid JSON" in stderr


def test_evaluate_rejects_manifest_without_spec(capsys, tmp_path, model_dir, log_path):
    copy = shutil.copytree(model_dir, tmp_path / "copy" / "1")
    manifest = copy / "manifest.json"
    manifest.write_text(f'{{"format": 1, "hash_algorithm": "{HASH_ALGORITHM}"}}')

    code, stderr = evaluate(capsys, copy, log_path)

    assert code == EXIT_USAGE
    assert "the key feature_spec is missing" in stderr


def test_parity_check_fails_on_nan():
    graph = {WATCH_TIME_OUTPUT: np.array([np.nan, 1.0])}
    numpy = {WATCH_TIME_OUTPUT: np.array([1.0, 1.0])}

    with pytest.raises(ExportError, match="differ by nan"):
        check_parity(graph, numpy)


def watch_versions(model_directory: Path, done: threading.Event) -> list[set[str]]:
    """Record the files of version 1 each time it is seen, until `done` is set."""
    seen: list[set[str]] = []

    def poll() -> None:
        while not done.is_set():
            try:
                seen.append({p.name for p in (model_directory / "1").iterdir()})
            except FileNotFoundError:
                time.sleep(0.001)

    threading.Thread(target=poll, daemon=True).start()
    return seen


def test_version_appears_only_when_complete(capsys, log_path):
    repository = log_path.parent / "models"
    done = threading.Event()
    seen = watch_versions(repository / "watchtime", done)

    code, _ = train(capsys, log_path, repository)
    done.set()

    written = {p.name for p in (repository / "watchtime" / "1").iterdir()}
    assert code == 0
    assert {"manifest.json", "model.onnx"} <= written
    assert all(files == written for files in seen)


def test_train_leaves_no_staging_directory(capsys, log_path):
    repository = log_path.parent / "models"

    train(capsys, log_path, repository)

    assert [p.name for p in (repository / "watchtime").iterdir()] == ["1"]


def test_failed_write_removes_staging_directory(tmp_path, model_dir):
    model = onnx.load(model_dir / "model.onnx")
    directory = tmp_path / "watchtime" / "1"

    # A manifest with NaN cannot be written as JSON, so the write fails after
    # the graph is already in the staging directory.
    with pytest.raises(ValueError, match="JSON"):
        write_model(directory, model, {"metrics": float("nan")})

    assert list((tmp_path / "watchtime").iterdir()) == []
