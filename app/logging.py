"""Logging configuration shared by the command line and the server processes.

Records of the `app` loggers carry the request id and the model of the
request being served, taken from context variables, so messages never paste
them in. Request bodies are never logged. Two things could still carry
request values into a log, and both are removed here: the messages of logged
exceptions, such as a KeyError that names a feature value, and the query
string of an access record.
"""

from __future__ import annotations

import copy
import json
import logging
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import DefaultFormatter

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,  # uvicorn's TRACE level, below DEBUG
}

HEALTH_PROBE_PATHS = frozenset(
    {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}
)

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


class QueryStringFilter(logging.Filter):
    """Removes the query string from the path of uvicorn's access records.

    No endpoint reads a query string, so one can only hold something a
    client sent by mistake, such as a token.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and "?" in str(args[2]):
            path = str(args[2]).partition("?")[0]
            record.args = (args[0], args[1], path + "?...", args[3], args[4])
        return True


class RedactedException(Exception):
    """Stands in for a logged exception, with its type but not its message."""


def redact_exception(error: BaseException) -> BaseException:
    """Return a copy of an exception and its chain, without their messages.

    Each copy keeps the type name and the traceback, which tell where the
    error happened, but not the message, which can quote a request value.
    Exception groups keep their members, redacted the same way.
    """
    copies: dict[int, BaseException] = {}

    def copy(original: BaseException) -> BaseException:
        if id(original) in copies:
            return copies[id(original)]
        name = f"{type(original).__module__}.{type(original).__qualname__}"
        note = f"{name}, message left out because it may quote request values"
        redacted: BaseException
        if isinstance(original, BaseExceptionGroup):
            members = [copy(member) for member in original.exceptions]
            redacted = ExceptionGroup(note, members)  # type: ignore[type-var]
        else:
            redacted = RedactedException(note)
        copies[id(original)] = redacted
        redacted.__traceback__ = original.__traceback__
        if original.__cause__ is not None:
            redacted.__cause__ = copy(original.__cause__)
        if original.__context__ is not None:
            redacted.__context__ = copy(original.__context__)
        redacted.__suppress_context__ = original.__suppress_context__
        return redacted

    return copy(error)


def _redacted_exc_info(exc_info: Any) -> Any:
    error = exc_info[1] if isinstance(exc_info, tuple) else None
    if error is None:
        return exc_info
    redacted = redact_exception(error)
    return type(redacted), redacted, redacted.__traceback__


class RedactingFormatter(logging.Formatter):
    """Formats records with tracebacks whose exception messages are left out."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return super().formatException(_redacted_exc_info(ei))


class RedactingDefaultFormatter(DefaultFormatter):
    """uvicorn's default formatter, with tracebacks as RedactingFormatter has them."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return super().formatException(_redacted_exc_info(ei))


class JsonFormatter(RedactingFormatter):
    """Formats each record as one JSON object on one line.

    The record is built as a dictionary and serialised, so a message with
    quotes or newlines still gives valid JSON. uvicorn's access records also
    get their fields (client, method, path, status) as keys.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "model": getattr(record, "model", model_var.get()),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            entry |= _access_fields(record.args)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _access_fields(args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) != 5:
        return {}
    client, method, path, http_version, status = args
    path_only = str(path).partition("?")[0]
    return {"client": client, "method": method, "path": path_only, "status": status}


def logging_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """Return a `logging.config.dictConfig` dictionary for uvicorn and the service.

    It extends uvicorn's default configuration, so uvicorn applies the same
    settings in every worker process it starts. With `log_format="json"`
    every handler writes one JSON object per record.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    numeric_level = LEVELS[level]

    config["filters"] = {
        "health_probes": {"()": "app.logging.HealthProbeFilter"},
        "query_strings": {"()": "app.logging.QueryStringFilter"},
        "request_context": {"()": "app.logging.RequestContextFilter"},
    }
    config["formatters"]["service"] = {
        "()": "app.logging.RedactingFormatter",
        "fmt": SERVICE_FORMAT,
    }
    config["formatters"]["default"]["()"] = "app.logging.RedactingDefaultFormatter"
    if log_format == "json":
        json_formatter = {"()": "app.logging.JsonFormatter"}
        for name in ("service", "default", "access"):
            config["formatters"][name] = dict(json_formatter)
        for name in ("default", "access"):
            config["handlers"][name]["filters"] = ["request_context"]
    config["handlers"]["access"]["filters"] = [
        *config["handlers"]["access"].get("filters", []),
        "health_probes",
        "query_strings",
    ]
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
