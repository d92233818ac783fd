"""Logging configuration shared by the command line and the server processes.

Records of the `app` loggers carry the request id and the model of the
request being served, taken from context variables, so messages never paste
them in. Request bodies are never logged.
"""

from __future__ import annotations

import copy
import logging
from contextvars import ContextVar
from typing import Any

from uvicorn.config import LOGGING_CONFIG

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,  # uvicorn's TRACE level, below DEBUG
}

HEALTH_PROBE_PATHS = frozenset({"/healthz", "/readyz"})

SERVICE_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s "
    "[request_id=%(request_id)s model=%(model)s] %(message)s"
)

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
model_var: ContextVar[str] = ContextVar("model", default="-")


def bind_request_context(request_id: str, model: str) -> None:
    """Attach a request id and a model label to the records of this context."""
    request_id_var.set(request_id)
    model_var.set(model)


class RequestContextFilter(logging.Filter):
    """Adds `request_id` and `model` from the context variables to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.model = model_var.get()
        return True


class HealthProbeFilter(logging.Filter):
    """Drops uvicorn access log records of health and readiness probes.

    uvicorn's access records have the arguments (client address, method,
    path with query, HTTP version, status code).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) < 3:
            return True
        path = str(args[2]).partition("?")[0]
        return path not in HEALTH_PROBE_PATHS


def logging_config(level: str) -> dict[str, Any]:
    """Return a `logging.config.dictConfig` dictionary for uvicorn and the service.

    It extends uvicorn's default configuration, so uvicorn applies the same
    settings in every worker process it starts.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    numeric_level = LEVELS[level]

    config["filters"] = {
        "health_probes": {"()": "app.logging.HealthProbeFilter"},
        "request_context": {"()": "app.logging.RequestContextFilter"},
    }
    config["formatters"]["service"] = {"format": SERVICE_FORMAT}
    config["handlers"]["access"]["filters"] = ["health_probes"]
    config["handlers"]["service"] = {
        "class": "logging.StreamHandler",
        "formatter": "service",
        "filters": ["request_context"],
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["app"] = {
        "handlers": ["service"],
        "level": numeric_level,
        "propagate": False,
    }
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"][name]["level"] = numeric_level
    return config
