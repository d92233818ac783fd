"""Settings from `WATCHTIME_*` variables and command line overrides."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from app.errors import SettingsError
from app.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Remove settings variables of the calling shell."""
    for name in list(os.environ):
        if name.startswith("WATCHTIME_"):
            monkeypatch.delenv(name)


def test_settings_defaults():
    settings = load_settings()

    assert settings.model_repository == Path("models")
    assert settings.model_name is None
    assert settings.model_version is None
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.workers == 1
    assert settings.max_candidates == 5000
    assert settings.intra_op_threads is None
    assert settings.log_level == "info"


def test_settings_read_environment(monkeypatch):
    monkeypatch.setenv("WATCHTIME_PORT", "9100")
    monkeypatch.setenv("WATCHTIME_MODEL_REPOSITORY", "/srv/models")

    settings = load_settings()

    assert settings.port == 9100
    assert settings.model_repository == Path("/srv/models")


def test_settings_override_wins_over_environment(monkeypatch):
    monkeypatch.setenv("WATCHTIME_PORT", "9100")

    settings = load_settings(port=9200)

    assert settings.port == 9200


def test_settings_none_override_keeps_environment(monkeypatch):
    monkeypatch.setenv("WATCHTIME_WORKERS", "3")

    settings = load_settings(workers=None)

    assert settings.workers == 3


def test_settings_invalid_variable_names_it(monkeypatch):
    monkeypatch.setenv("WATCHTIME_MAX_CANDIDATES", "lots")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "WATCHTIME_MAX_CANDIDATES='lots'" in str(raised.value)
    assert "valid integer" in str(raised.value)


def test_settings_invalid_override_names_option():
    with pytest.raises(SettingsError) as raised:
        load_settings(port=70000)

    assert "--port=70000" in str(raised.value)
    assert "less than or equal to 65535" in str(raised.value)


def test_settings_list_every_invalid_value(monkeypatch):
    monkeypatch.setenv("WATCHTIME_INTRA_OP_THREADS", "-1")
    monkeypatch.setenv("WATCHTIME_MODEL_VERSION", "0")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "WATCHTIME_INTRA_OP_THREADS='-1'" in str(raised.value)
    assert "WATCHTIME_MODEL_VERSION='0'" in str(raised.value)


def test_settings_log_level_ignores_case(monkeypatch):
    monkeypatch.setenv("WATCHTIME_LOG_LEVEL", "DEBUG")

    settings = load_settings()

    assert settings.log_level == "debug"


def test_settings_invalid_log_level_lists_allowed(monkeypatch):
    monkeypatch.setenv("WATCHTIME_LOG_LEVEL", "verbose")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "WATCHTIME_LOG_LEVEL='verbose'" in str(raised.value)
    assert "critical, error, warning, info, debug, trace" in str(raised.value)


def test_settings_intra_op_threads_accepts_zero(monkeypatch):
    monkeypatch.setenv("WATCHTIME_INTRA_OP_THREADS", "0")

    settings = load_settings()

    assert settings.intra_op_threads == 0


def test_settings_spinning_off_by_default():
    settings = load_settings()

    assert settings.onnxruntime_spinning is False


def test_settings_spinning_reads_environment(monkeypatch):
    monkeypatch.setenv("WATCHTIME_ONNXRUNTIME_SPINNING", "true")

    settings = load_settings()

    assert settings.onnxruntime_spinning is True


def test_settings_fields_have_descriptions():
    undocumented = [
        name for name, field in Settings.model_fields.items() if not field.description
    ]

    assert undocumented == []


def test_settings_warn_about_unknown_variable(monkeypatch, caplog):
    monkeypatch.setenv("WATCHTIME_PROT", "9000")

    with caplog.at_level(logging.WARNING, logger="app.settings"):
        load_settings()

    assert "WATCHTIME_PROT" in caplog.text
