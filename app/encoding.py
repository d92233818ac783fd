"""Encoding of ranking requests into the model's raw input tensors.

The tensors follow docs/model-format.md: a batch of R requests with N
candidates in all has context tensors with R rows, candidate tensors with N
rows, and `candidate_request` maps each candidate row to its request. Each
feature is one column built with one pass over its values and checked with
numpy, so a request with thousands of candidates creates no object per value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contract import (
    CANDIDATE_REQUEST_INPUT,
    Feature,
    FeatureSpec,
    category_id,
    id_list_matrix,
)
from app.decoding import ParsedRequest, candidate_features
from app.errors import InvalidFeature, UnknownFeature, describe_value

Tensors = dict[str, np.ndarray]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = (int, float)

STRING_ID_CACHE_SIZE = 1 << 18
"""Strings whose ids are remembered; the cache is emptied when it is full."""

MAX_FEATURE_STRING_LENGTH = 1024
"""Maximum length of a string feature value or id-list entry, in characters."""

DEFAULT_MAX_ID_LIST_LENGTH = 1000
"""Maximum number of ids in an id-list value unless the settings change it."""

Locate = Callable[[int], str]
"""Function from a row of a column to the field path of its value."""


@dataclass(frozen=True)
class InputLimits:
    """Checks of feature values that the service's settings choose."""

    max_id_list_length: int = DEFAULT_MAX_ID_LIST_LENGTH
    """Longest id list accepted; the model still reads only its `max_length`."""

    strict_features: bool = False
    """Reject feature names the model does not read instead of ignoring them."""


DEFAULT_LIMITS = InputLimits()


def feature_id(value: Any) -> int:
    """Return `category_id(value)` of a request value, with a length limit.

    Raises ValueError for a string longer than MAX_FEATURE_STRING_LENGTH,
    and whatever `category_id` raises.
    """
    if type(value) is str and len(value) > MAX_FEATURE_STRING_LENGTH:
        raise ValueError(
            f"the string has {len(value)} characters, more than "
            f"{MAX_FEATURE_STRING_LENGTH}"
        )
    return category_id(value)


class _StringIds(dict[str, int]):
    """Ids of strings seen before, so a repeated id costs one dict lookup.

    A string enters only after `feature_id` accepted it, so a cached string
    is known to be valid.
    """

    def __missing__(self, text: str) -> int:
        if len(self) >= STRING_ID_CACHE_SIZE:
            self.clear()
        value = self[text] = feature_id(text)
        return value


_string_ids = _StringIds()


def string_aware_ids(values: list[Any]) -> np.ndarray:
    """Map categorical values to ids with `feature_id`, with strings cached.

    Only exact `str` values go through the cache: `True == 1` and `1.0 == 1`
    as dict keys, so other types always take `feature_id`, which rejects them.
    """
    ids = _string_ids
    return np.fromiter(
        (ids[v] if type(v) is str else feature_id(v) for v in values),
        np.int64,
        len(values),
    )


@dataclass(frozen=True)
class EncodedBatch:
    """Raw input tensors of a batch of requests."""

    tensors: Tensors
    candidate_counts: tuple[int, ...]
    """Number of candidates of each request, in request order."""

    unknown_features: int
    """Number of feature values whose names the model does not use."""

    @property
    def candidate_total(self) -> int:
        return sum(self.candidate_counts)


class FeatureEncoder:
    """Encoder of `/v1/rank` requests for one feature spec.

    Raises ValueError at construction when the spec cannot be encoded, such as
    an id list without `max_length` or a default that has the wrong type.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._context_features = spec.of_source("context")
        self._candidate_features = spec.of_source("candidate")
        self._context_names = {f.name for f in self._context_features}
        self._candidate_names = {f.name for f in self._candidate_features}
        self._max_lengths = {
            f.name: _max_length(f) for f in spec.features if f.kind == "id_list"
        }
        self._check_defaults()

    def encode(
        self, requests: Sequence[ParsedRequest], limits: InputLimits = DEFAULT_LIMITS
    ) -> EncodedBatch:
        """Encode a batch of requests, where one request is a batch of one.

        Raises InvalidFeature naming the field path of the first invalid value,
        and UnknownFeature for an unknown name when `limits` is strict.
        """
        candidates = [c for request in requests for c in request.candidates]
        feature_values = [candidate_features(c) for c in candidates]
        counts = tuple(len(request.candidates) for request in requests)
        tensors: Tensors = {CANDIDATE_REQUEST_INPUT: _candidate_request(counts)}

        for feature in self._context_features:
            values = [_given_or_default(r.context, feature) for r in requests]
            locate = _context_locator(feature, len(requests))
            tensors[feature.name] = self._encode_column(feature, values, locate, limits)

        for feature in self._candidate_features:
            values = _candidate_values(feature, candidates, feature_values)
            locate = _candidate_locator(feature, requests, candidates)
            tensors[feature.name] = self._encode_column(feature, values, locate, limits)

        unknown = self._count_unknown(requests, feature_values)
        if unknown and limits.strict_features:
            raise self._first_unknown(requests)
        return EncodedBatch(tensors, counts, unknown)

    def _check_placement(self, requests: Sequence[ParsedRequest]) -> None:
        """Reject a known feature sent on the wrong side of the request.

        Ignoring it, as an unknown name is, would rank with its default and
        give a silently different order.
        """
        for index, request in enumerate(requests):
            prefix = _request_prefix(index, len(requests))
            for name in request.context.keys() & self._candidate_names:
                raise InvalidFeature(
                    f"{prefix}context.{name} is a candidate feature; send it in "
                    "each candidate's features",
                    field=f"{prefix}context.{name}",
                    value=request.context[name],
                )
            for position, candidate in enumerate(request.candidates):
                features = candidate_features(candidate)
                for name in features.keys() & self._context_names:
                    path = f"{prefix}candidates[{position}].features.{name}"
                    raise InvalidFeature(
                        f"{path} is a context feature; send it once in context",
                        field=path,
                        value=features[name],
                    )

    def _first_unknown(self, requests: Sequence[ParsedRequest]) -> UnknownFeature:
        """Return the error naming the first feature value the model does not read."""
        for index, request in enumerate(requests):
            prefix = _request_prefix(index, len(requests))
            for name, value in request.context.items():
                if name not in self._context_names:
                    return _unknown(f"{prefix}context.{name}", name, value)
            for position, candidate in enumerate(request.candidates):
                for name, value in candidate_features(candidate).items():
                    if name not in self._candidate_names:
                        path = (
                            f"{prefix}candidates[{position}] "
                            f"(id {json.dumps(candidate['id'])}).features.{name}"
                        )
                        return _unknown(path, name, value)
        raise ValueError("every feature name is known")

    def _encode_column(
        self,
        feature: Feature,
        values: list[Any],
        locate: Locate,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> np.ndarray:
        if feature.kind == "numeric":
            return _numeric_column(feature, values, locate)
        if feature.kind == "categorical":
            return _categorical_column(feature, values, locate)
        max_length = self._max_lengths[feature.name]
        return _id_list_column(feature, values, locate, max_length, limits)

    def _count_unknown(
        self, requests: Sequence[ParsedRequest], feature_values: list[dict[str, Any]]
    ) -> int:
        """Return how many values have names the model does not read.

        The union of all names is built at C speed; the loops over candidates
        run only when it holds a name that is not a candidate feature.
        """
        context_names = set().union(*(r.context.keys() for r in requests))
        candidate_names = set().union(*feature_values)
        if (
            context_names <= self._context_names
            and candidate_names <= self._candidate_names
        ):
            return 0

        self._check_placement(requests)
        in_context = sum(
            1 for r in requests for name in r.context if name not in self._context_names
        )
        in_candidates = sum(
            1
            for values in feature_values
            for name in values
            if name not in self._candidate_names
        )
        return in_context + in_candidates

    def _check_defaults(self) -> None:
        for feature in self.spec.features:
            self._check_spec_value(feature, "default", feature.default)
            self._check_spec_value(feature, "example", feature.example)

    def _check_spec_value(self, feature: Feature, label: str, value: Any) -> None:
        def locate(_: int) -> str:
            return f"{label} of {feature.name}"

        try:
            self._encode_column(feature, [value], locate)
        except InvalidFeature as error:
            raise ValueError(f"the feature spec is invalid: {error}") from None


def _max_length(feature: Feature) -> int:
    max_length = feature.transform.get("max_length")
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, int)
        or max_length < 1
    ):
        raise ValueError(
            f"feature {feature.name!r}: an id_list transform needs an integer "
            f"max_length of at least 1, got {max_length!r}"
        )
    return max_length


def _candidate_request(counts: tuple[int, ...]) -> np.ndarray:
    rows = np.arange(len(counts), dtype=np.int64)
    return np.repeat(rows, counts)


def _given_or_default(values: dict[str, Any], feature: Feature) -> Any:
    value = values.get(feature.name)
    return feature.default if value is None else value


def _candidate_values(
    feature: Feature,
    candidates: list[dict[str, Any]],
    feature_values: list[dict[str, Any]],
) -> list[Any]:
    name = feature.name
    sent = [values.get(name) for values in feature_values]
    if feature.value_from_id:
        return [
            c["id"] if value is None else value
            for value, c in zip(sent, candidates, strict=True)
        ]
    default = feature.default
    if None not in sent:
        return sent
    return [default if value is None else value for value in sent]


def _context_locator(feature: Feature, request_count: int) -> Locate:
    def locate(row: int) -> str:
        return _request_prefix(row, request_count) + f"context.{feature.name}"

    return locate


def _candidate_locator(
    feature: Feature,
    requests: Sequence[ParsedRequest],
    candidates: list[dict[str, Any]],
) -> Locate:
    def locate(row: int) -> str:
        # Runs only for an invalid value, so the offsets are computed here.
        offsets = np.cumsum([len(r.candidates) for r in requests])
        request_index = int(np.searchsorted(offsets, row, side="right"))
        first_row = int(offsets[request_index - 1]) if request_index else 0
        candidate_id = json.dumps(candidates[row]["id"])
        return (
            _request_prefix(request_index, len(requests))
            + f"candidates[{row - first_row}] (id {candidate_id})"
            + f".features.{feature.name}"
        )

    return locate


def _request_prefix(request_index: int, request_count: int) -> str:
    # A lone request's paths start at its own body, as the client sent it.
    return f"requests[{request_index}]." if request_count > 1 else ""


def _numeric_column(feature: Feature, values: list[Any], locate: Locate) -> np.ndarray:
    # type() rather than isinstance(), because bool is a subclass of int.
    for row, value in enumerate(values):
        if type(value) not in _NUMBER_TYPES:
            raise _invalid(feature, locate(row), value)

    try:
        column = np.array(values, dtype=np.float64)
    except OverflowError:
        row = next(i for i, v in enumerate(values) if abs(v) > _FLOAT32_MAX)
        raise _invalid(feature, locate(row), values[row]) from None

    # Comparisons with NaN are false, so this also catches NaN and infinities.
    out_of_range = ~(np.abs(column) <= _FLOAT32_MAX)
    if out_of_range.any():
        row = int(np.argmax(out_of_range))
        raise _invalid(feature, locate(row), values[row])
    return column.astype(np.float32)


def _categorical_column(
    feature: Feature, values: list[Any], locate: Locate
) -> np.ndarray:
    try:
        return string_aware_ids(values)
    except (TypeError, ValueError):
        row = _first_invalid_id(values)
        raise _invalid(feature, locate(row), values[row]) from None


def _id_list_column(
    feature: Feature,
    values: list[Any],
    locate: Locate,
    max_length: int,
    limits: InputLimits,
) -> np.ndarray:
    for row, value in enumerate(values):
        if not isinstance(value, list):
            raise _invalid(feature, locate(row), value)
        if len(value) > limits.max_id_list_length:
            raise _list_too_long(feature, locate(row), value, max_length, limits)

    try:
        matrix = id_list_matrix(values, max_length, string_aware_ids)
        # The model reads only the first max_length ids, but the rest are
        # checked too, so that a client learns of a bad id wherever it is.
        for ids in values:
            if len(ids) > max_length:
                string_aware_ids(ids[max_length:])
    except (TypeError, ValueError):
        row = next(i for i, ids in enumerate(values) if _has_invalid_id(ids))
        position = _first_invalid_id(values[row])
        path = f"{locate(row)}[{position}]"
        raise _invalid(feature, path, values[row][position]) from None
    return matrix


def _list_too_long(
    feature: Feature, path: str, ids: list[Any], max_length: int, limits: InputLimits
) -> InvalidFeature:
    limit = limits.max_id_list_length
    message = (
        f"{path} is invalid: got an array of {len(ids)} ids, more than the "
        f"maximum of {limit} set by WATCHTIME_MAX_ID_LIST_LENGTH; send at most "
        f"{limit} ids, most recent first, of which the model reads the first "
        f"{max_length}"
    )
    return InvalidFeature(message, field=path, value=ids)


def _has_invalid_id(ids: list[Any]) -> bool:
    try:
        string_aware_ids(ids)
    except (TypeError, ValueError):
        return True
    return False


def _first_invalid_id(values: list[Any]) -> int:
    for row, value in enumerate(values):
        try:
            feature_id(value)
        except (TypeError, ValueError):
            return row
    raise ValueError("every value is a valid id")


def _invalid(feature: Feature, path: str, value: Any) -> InvalidFeature:
    received = describe_value(value)
    if isinstance(value, str) and len(value) > MAX_FEATURE_STRING_LENGTH:
        received += f" of {len(value)} characters"
    message = f"{path} is invalid: got {received}, expected {_expected_value(feature)}"
    return InvalidFeature(message, field=path, value=value)


def _unknown(path: str, name: str, value: Any) -> UnknownFeature:
    message = (
        f"{path} is not a feature of the served model, and "
        f"WATCHTIME_STRICT_FEATURES=true rejects unknown features; remove "
        f"{json.dumps(name)}, or see GET /v1/model for the features it reads"
    )
    return UnknownFeature(message, field=path, value=value)


def _expected_value(feature: Feature) -> str:
    example = json.dumps(feature.example)
    strings = f", with strings of at most {MAX_FEATURE_STRING_LENGTH} characters"
    if feature.kind == "numeric":
        expected = f"a finite number such as {example}"
    elif feature.kind == "categorical":
        expected = f"a string or an integer in [0, 2**62) such as {example}{strings}"
    else:
        expected = (
            f"an array of strings or integers in [0, 2**62) such as {example}{strings}"
        )

    if feature.value_from_id:
        return expected + ", or leave it out to use the candidate's id"
    return (
        expected + f", or leave it out to use the default {json.dumps(feature.default)}"
    )
