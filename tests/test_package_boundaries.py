"""The service runs without the trainer package and its dependencies."""

from __future__ import annotations

import subprocess
import sys

SERVING_MODULES = "app.main, app.cli, app.model, app.ranking, app.encoding"


def test_serving_code_never_imports_the_trainer(model_repository):
    code = (
        f"import sys, {SERVING_MODULES}\n"
        "from app.settings import load_settings\n"
        "from app.model import load_configured_model\n"
        f"settings = load_settings(model_repository={str(model_repository)!r})\n"
        "app.main.create_app(settings)\n"
        "load_configured_model(settings)\n"
        "heavy = {'trainer', 'sklearn', 'scipy', 'pandas'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
