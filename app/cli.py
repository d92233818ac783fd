"""Command line of the project: `watchtime serve` and the training commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import uvicorn

from app.errors import ModelLoadError, SettingsError
from app.logging import logging_config
from app.memory import limit_malloc_arenas
from app.metrics import MULTIPROCESS_ENV, clear_multiprocess_dir
from app.model import RankingModel, load_configured_model
from app.settings import Settings, env_name, load_settings

EXIT_USAGE = 2
"""Exit status for invalid settings or models, as argparse uses for bad usage."""

APP_FACTORY = "app.main:create_app_from_env"

TRAINER_COMMANDS = {
    "simulate": "simulate an impression log for training",
    "train": "fit a model on an impression log and export it",
    "evaluate": "compute holdout metrics of an exported model",
    "compare": "train every variant at several click rates and report",
}

TRAIN_DEPENDENCIES = frozenset({"numpy", "pandas", "sklearn", "onnx", "scipy"})

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["bench"]:
        # The benchmark lives in load_tests and starts the service itself.
        return int(importlib.import_module("load_tests.bench").main(arguments[1:]))
    if arguments and arguments[0] in TRAINER_COMMANDS:
        return run_trainer_command(arguments)

    options = build_parser().parse_args(arguments)
    return serve(options)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of `serve`, since the training commands parse their own."""
    parser = argparse.ArgumentParser(
        prog="watchtime",
        description="Rank candidate videos by expected watch time.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve_parser = commands.add_parser(
        "serve",
        help="serve the ranking API over HTTP",
        description="Check the model once, then serve the ranking API with "
        "uvicorn. Options override the WATCHTIME_* environment variables.",
    )
    _add_serve_options(serve_parser)

    for name, help_text in TRAINER_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    commands.add_parser(
        "bench", help="benchmark the service on loopback", add_help=False
    )
    return parser


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    def option_help(field: str, text: str, default: str | None = None) -> str:
        default_text = default or Settings.model_fields[field].default
        return f"{text} ({env_name(field)}, default: {default_text})"

    parser.add_argument("--host", help=option_help("host", "address to bind"))
    parser.add_argument("--port", type=int, help=option_help("port", "TCP port"))
    parser.add_argument(
        "--workers", type=int, help=option_help("workers", "server processes")
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        help=option_help("model_repository", "directory of <name>/<version>/"),
    )
    parser.add_argument(
        "--model-name",
        help=option_help("model_name", "model to serve", "the only model"),
    )
    parser.add_argument(
        "--model-version",
        type=int,
        help=option_help("model_version", "version to serve", "the highest"),
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help=option_help("log_format", "log record format"),
    )
    parser.add_argument(
        "--reload-interval",
        type=float,
        help=option_help(
            "reload_interval_s", "seconds between model repository checks, 0 = off"
        ),
    )
    parser.add_argument(
        "--log-level",
        help=option_help("log_level", "critical, error, warning, info, debug or trace"),
    )


def serve(options: argparse.Namespace) -> int:
    """Check the settings and the model, then run uvicorn until it stops."""
    try:
        settings = load_settings(
            host=options.host,
            port=options.port,
            workers=options.workers,
            model_repository=options.model_repository,
            model_name=options.model_name,
            model_version=options.model_version,
            log_level=options.log_level,
            log_format=options.log_format,
            reload_interval_s=options.reload_interval,
        )
    except SettingsError as error:
        print(f"watchtime serve: {error}", file=sys.stderr)
        return EXIT_USAGE

    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    try:
        model = load_configured_model(settings)
    except ModelLoadError as error:
        print(f"watchtime serve: cannot load the model: {error}", file=sys.stderr)
        return EXIT_USAGE

    limit_malloc_arenas()
    made_runtime_dir = settings.runtime_dir is None
    settings = _prepare_runtime_dir(settings)
    _export_settings(settings, model)
    try:
        _run_uvicorn(settings, log_config)
    finally:
        if made_runtime_dir and settings.runtime_dir is not None:
            shutil.rmtree(settings.runtime_dir, ignore_errors=True)
    return 0


def _run_uvicorn(settings: Settings, log_config: dict) -> None:
    # After its graceful shutdown, uvicorn raises the stop signal again for
    # the handler that was in place before it. With the default handler, a
    # stopped single-worker server would die of SIGTERM (exit status 143)
    # instead of exiting with 0; this handler exits with 0, also when the
    # signal arrives before uvicorn has installed its own.
    signal.signal(signal.SIGTERM, _exit_successfully)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


def _exit_successfully(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _prepare_runtime_dir(settings: Settings) -> Settings:
    """Create the directory the workers share and empty its metrics folder.

    The workers find reload requests and, with several workers, each other's
    Prometheus samples there. Samples of an earlier server would add to this
    one's counters, so they are removed before any worker starts.
    """
    runtime_dir = settings.runtime_dir or Path(tempfile.mkdtemp(prefix="watchtime-"))
    runtime_dir.mkdir(parents=True, exist_ok=True)
    # A directory set by the deployment is used, and emptied, with one worker
    # too: a container restart would otherwise merge the last run's samples.
    if settings.workers > 1 or MULTIPROCESS_ENV in os.environ:
        metrics_dir = Path(
            os.environ.setdefault(MULTIPROCESS_ENV, str(runtime_dir / "metrics"))
        )
        clear_multiprocess_dir(metrics_dir)
        logger.info("workers share Prometheus samples in %s", metrics_dir)
    return settings.model_copy(update={"runtime_dir": runtime_dir})


def _export_settings(settings: Settings, model: RankingModel) -> None:
    """Pass the checked settings to the server processes through the environment.

    Workers build their application from `WATCHTIME_*` variables. The model
    name is pinned to the checked model; its version is pinned only when the
    settings pin it, so hot reload can move every worker to newer versions.
    The admin token is left out: it can only come from the environment, which
    the workers inherit.
    """
    values = settings.model_dump(exclude={"admin_token"})
    values["model_name"] = model.name
    for field, value in values.items():
        if value is not None:
            os.environ[env_name(field)] = str(value)
    logger.info("serving model %s version %s", model.name, model.version)


def run_trainer_command(arguments: list[str]) -> int:
    """Run a training command of the trainer package and return its exit status.

    The trainer is imported here, when a training command runs, and nowhere
    in the serving code, so the service installs and starts without the
    `train` extra (onnx, scikit-learn, scipy, pandas).
    """
    try:
        trainer_cli = importlib.import_module("trainer.cli")
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in TRAIN_DEPENDENCIES:
            raise
        print(
            f"watchtime {arguments[0]}: the training commands need the train extra, "
            f"and {missing} is not installed. Install it with "
            "pip install 'watchtime-ranker[train]', or with "
            "pip install -e '.[train]' in a checkout.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return int(trainer_cli.main(arguments))


if __name__ == "__main__":
    sys.exit(main())
