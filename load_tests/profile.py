"""Sampling profile of the server's workers with py-spy, summarised by function.

py-spy's `raw` format has one line per distinct stack, `frame;frame;... count`,
each frame written `function (file:line)`. The summary adds the samples of
each function over its lines: self samples where it is the innermost frame,
total samples where it is anywhere on the stack.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY_RATE_HZ = 250
TOP_FUNCTIONS = 15

# With --subprocesses each stack starts with its process and the parents'.
_PROCESS_PREFIX = re.compile(r'^(?:process \d+:".*?";)+', re.DOTALL)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")

logger = logging.getLogger(__name__)


class Profiler:
    """A py-spy recording of a process tree that runs for a fixed time."""

    def __init__(self, pid: int, duration_s: float, output: Path) -> None:
        self.output = output
        executable = _find_py_spy()
        if executable is None:
            raise FileNotFoundError(
                "py-spy is not installed; install the bench extra with "
                "pip install -e '.[bench]'"
            )
        self.process = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                str(PY_SPY_RATE_HZ),
                "--duration",
                str(max(1, round(duration_s))),
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> dict[str, Any]:
        """Wait for the recording to end and return its summary."""
        _, errors = self.process.communicate(timeout=120)
        if self.process.returncode != 0 or not self.output.exists():
            logger.warning(
                "py-spy failed with status %s: %s", self.process.returncode, errors
            )
            return {"samples": 0, "self": [], "total": [], "error": errors.strip()}
        return summarise_profile(self.output.read_text(encoding="utf-8"))


def _find_py_spy() -> str | None:
    # pip installs py-spy next to the interpreter, which need not be on PATH.
    beside_python = Path(sys.executable).parent / "py-spy"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("py-spy")


def summarise_profile(raw: str) -> dict[str, Any]:
    """Return the sample count and the functions with most self and total samples."""
    self_samples: Counter[str] = Counter()
    total_samples: Counter[str] = Counter()
    samples = 0
    for stack, count in _stacks(raw):
        frames = [_function_name(frame) for frame in stack.split(";")]
        samples += count
        self_samples[frames[-1]] += count
        for name in set(frames):
            total_samples[name] += count
    return {
        "samples": samples,
        "self": _top_shares(self_samples, samples),
        "total": _top_shares(total_samples, samples),
    }


def _stacks(raw: str) -> list[tuple[str, int]]:
    # A command line in the process prefix can contain newlines, so the
    # stacks are split at the sample counts that end them.
    stacks = []
    for match in re.finditer(r"(.*?) (\d+)\n", raw + "\n", re.DOTALL):
        stack = _PROCESS_PREFIX.sub("", match.group(1).strip())
        if stack:
            stacks.append((stack, int(match.group(2))))
    return stacks


def _function_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    short_file = "/".join(Path(match.group("file")).parts[-2:])
    return f"{match.group('function')} ({short_file})"


def _top_shares(counts: Counter[str], samples: int) -> list[dict[str, Any]]:
    return [
        {"function": name, "samples": count, "share": round(count / samples, 4)}
        for name, count in counts.most_common(TOP_FUNCTIONS)
    ]
