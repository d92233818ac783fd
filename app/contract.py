"""The contract between the trainer and the service.

Both sides turn JSON feature values into the same raw tensors with the code in
this module, and everything after that (quantile normalisation, hashing into
buckets, averaging id lists) happens inside the ONNX graph. The module depends
on the standard library and numpy only, so the trainer can import it without
pulling in the web stack.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MANIFEST_FORMAT = 1
"""Version of the manifest layout; the service rejects other versions."""

HASH_ALGORITHM = "blake2b64-mod62-v1"
"""Name of the id function below, stored in every manifest."""

PADDING_ID = -1
"""Id that fills the unused tail of an id-list row; real ids are never negative."""

CANDIDATE_REQUEST_INPUT = "candidate_request"
"""Graph input that maps each candidate row to its row in the context tensors."""

LOGIT_OUTPUT = "logit"
WATCH_TIME_OUTPUT = "expected_watch_time_s"

SOURCES = ("context", "candidate")
KINDS = ("numeric", "categorical", "id_list")

_INTEGER_ID_LIMIT = 1 << 62
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


@functools.lru_cache(maxsize=1 << 16)
def _string_id(text: str) -> int:
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "the string is not valid Unicode: it contains a lone UTF-16 surrogate"
        ) from None
    digest = hashlib.blake2b(encoded, digest_size=8).digest()
    return _INTEGER_ID_LIMIT + int.from_bytes(digest, "little") % _INTEGER_ID_LIMIT


def category_id(value: Any) -> int:
    """Map a categorical value to its stable non-negative int64 id.

    Integers in [0, 2**62) and strings that spell such an integer in plain
    decimal map to that integer, so `13` and `"13"` are the same category and
    small vocabularies such as the hour of day never collide in their buckets.
    Other strings map to 2**62 plus 62 bits of their BLAKE2b digest. Python's
    built-in `hash()` is salted per process and would differ between workers.

    Raises TypeError for values that are neither str nor int (bool included),
    and ValueError for integers outside [0, 2**62) and for strings with a lone
    surrogate, which have no UTF-8 encoding.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(
            f"expected a string or a non-negative integer, got {type(value).__name__}"
        )

    if isinstance(value, int):
        if not 0 <= value < _INTEGER_ID_LIMIT:
            raise ValueError(f"integer {value} is outside [0, 2**62)")
        return value

    if _DECIMAL.fullmatch(value) and int(value) < _INTEGER_ID_LIMIT:
        return int(value)
    return _string_id(value)


def category_ids(values: list[Any]) -> np.ndarray:
    """Map a list of categorical values to an int64 array of ids."""
    return np.fromiter((category_id(v) for v in values), np.int64, len(values))


def id_list_matrix(
    lists: list[list[Any]],
    max_length: int,
    to_ids: Callable[[list[Any]], np.ndarray] = category_ids,
) -> np.ndarray:
    """Pack id lists into an int64 matrix padded with PADDING_ID.

    Each list keeps its first `max_length` entries, which by convention are
    the most recent ones. `to_ids` maps a list to ids: `category_ids` unless
    the caller has a faster equivalent. The matrix has at least one column, so
    that an empty batch of lists still has a valid shape.
    """
    width = max(1, min(max_length, max((len(ids) for ids in lists), default=0)))
    matrix = np.full((len(lists), width), PADDING_ID, dtype=np.int64)

    for row, ids in enumerate(lists):
        kept = ids[:width]
        matrix[row, : len(kept)] = to_ids(kept)
    return matrix


@dataclass(frozen=True)
class Feature:
    """One model input as declared in the manifest's feature spec."""

    name: str
    source: str
    kind: str
    default: Any
    example: Any
    transform: dict[str, Any]
    description: str = ""
    value_from_id: bool = False
    """True when the value is the candidate's own `id` unless given explicitly."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feature:
        feature = cls(
            name=data["name"],
            source=data["source"],
            kind=data["kind"],
            default=data["default"],
            example=data["example"],
            transform=dict(data["transform"]),
            description=data.get("description", ""),
            value_from_id=bool(data.get("value_from_id", False)),
        )
        feature.check()
        return feature

    def check(self) -> None:
        """Raise ValueError when the declaration is inconsistent."""
        if self.source not in SOURCES:
            raise ValueError(
                f"feature {self.name!r}: source {self.source!r} is not one of {SOURCES}"
            )
        if self.kind not in KINDS:
            raise ValueError(
                f"feature {self.name!r}: kind {self.kind!r} is not one of {KINDS}"
            )
        if self.value_from_id and self.source != "candidate":
            raise ValueError(
                f"feature {self.name!r}: value_from_id needs source 'candidate'"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "default": self.default,
            "example": self.example,
            "description": self.description,
            "value_from_id": self.value_from_id,
            "transform": self.transform,
        }


@dataclass(frozen=True)
class Cross:
    """A crossed pair of categorical features with one weight per bucket pair."""

    name: str
    features: tuple[str, str]
    buckets: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cross:
        first, second = data["features"]
        return cls(
            name=data["name"], features=(first, second), buckets=int(data["buckets"])
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": list(self.features),
            "buckets": self.buckets,
        }


@dataclass(frozen=True)
class FeatureSpec:
    """The declarative feature spec stored in a model's manifest."""

    features: tuple[Feature, ...]
    crosses: tuple[Cross, ...] = field(default=())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        spec = cls(
            features=tuple(Feature.from_dict(f) for f in data["features"]),
            crosses=tuple(Cross.from_dict(c) for c in data.get("crosses", [])),
        )
        spec.check()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [f.to_dict() for f in self.features],
            "crosses": [c.to_dict() for c in self.crosses],
        }

    def check(self) -> None:
        """Raise ValueError when names repeat or a cross names a bad feature."""
        names = [f.name for f in self.features]
        if len(set(names)) != len(names) or CANDIDATE_REQUEST_INPUT in names:
            raise ValueError(f"feature names must be unique, got {names}")

        categorical = {f.name for f in self.features if f.kind == "categorical"}
        for cross in self.crosses:
            missing = [name for name in cross.features if name not in categorical]
            if missing:
                raise ValueError(
                    f"cross {cross.name!r} names {missing}, "
                    "which are not categorical features"
                )

    def by_name(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def of_source(self, source: str) -> list[Feature]:
        return [f for f in self.features if f.source == source]

    def cross_source(self, cross: Cross) -> str:
        """Return `candidate` if either side of the cross varies per candidate."""
        sources = {self.by_name(name).source for name in cross.features}
        return "candidate" if "candidate" in sources else "context"


def tensor_dtype(feature: Feature) -> type[np.generic]:
    """Return the numpy dtype of a feature's raw input tensor."""
    return np.float32 if feature.kind == "numeric" else np.int64
