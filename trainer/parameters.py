"""Store a network's parameters in the manifest, or beside it in an .npz file.

A network without dense layers is linear, and its parameters stay in the
manifest as JSON: `linear` holds the bias and weights of the logit, and
`click` those of the click logit when the variant has a click head. A network
with dense layers has hundreds of thousands of weights or more, so they go to
`parameters.npz` beside the manifest, as float32 arrays. The manifest's
`network` section then names the file, its SHA-256 and each array's shape.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from app.contract import FeatureSpec
from trainer.network import Dense, Network

PARAMETERS_FILE = "parameters.npz"
ACTIVATION = "relu"
FIRST_BIAS = "first_layer.bias"
TABLE_PREFIX = "first_layer.table."

# A fixed timestamp for every member of the .npz archive, so equal
# parameters give a byte-identical file and the same SHA-256.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def rounded(network: Network) -> Network:
    """Return a copy with every parameter rounded to float32, as exported."""

    def round32(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float32).astype(np.float64)

    return Network(
        variant=network.variant,
        spec=network.spec,
        tables={name: round32(table) for name, table in network.tables.items()},
        bias=round32(network.bias),
        layers=tuple(
            Dense(round32(layer.weights), round32(layer.bias))
            for layer in network.layers
        ),
        click_head=network.click_head,
    )


def manifest_parameters(network: Network) -> tuple[dict[str, Any], bytes | None]:
    """Return the manifest sections of `network` and the .npz file's content.

    The content is None for a linear network, whose parameters fit in the
    manifest itself.
    """
    if network.is_linear:
        sections = {"linear": _linear_section(network, 0)}
        if network.click_head:
            sections["click"] = _linear_section(network, 1)
        return sections, None

    arrays = _arrays(network)
    content = npz_bytes(arrays)
    section = {
        "hidden_units": [int(layer.weights.shape[0]) for layer in network.layers],
        "activation": ACTIVATION,
        "parameters": {
            "file": PARAMETERS_FILE,
            "sha256": hashlib.sha256(content).hexdigest(),
            "arrays": {name: list(array.shape) for name, array in arrays.items()},
        },
    }
    return {"network": section}, content


def _linear_section(network: Network, column: int) -> dict[str, Any]:
    return {
        "bias": _shortest(network.bias[column]),
        "weights": {
            name: [_shortest(w) for w in table[:, column]]
            for name, table in network.tables.items()
        },
    }


def _shortest(value: float) -> float:
    """Return the float32 value in its shortest decimal form, as JSON stores it."""
    return float(np.format_float_positional(np.float32(value), unique=True))


def _arrays(network: Network) -> dict[str, np.ndarray]:
    arrays = {FIRST_BIAS: network.bias}
    arrays |= {TABLE_PREFIX + name: t for name, t in network.tables.items()}
    for index, layer in enumerate(network.layers):
        arrays[f"dense.{index}.weights"] = layer.weights
        arrays[f"dense.{index}.bias"] = layer.bias
    return {name: np.asarray(a, dtype=np.float32) for name, a in arrays.items()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Return `arrays` as the content of an uncompressed .npz file.

    numpy's own savez stamps each member with the current time, so the archive
    is written member by member here with a fixed timestamp instead.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIMESTAMP)
            with archive.open(member, "w") as stream:
                np.lib.format.write_array(stream, np.ascontiguousarray(array))
    return buffer.getvalue()


def load_network(manifest: dict[str, Any], directory: Path | None = None) -> Network:
    """Rebuild the exported network from a manifest and, for MLPs, its .npz.

    A manifest with a `network` section needs `directory`, the model version
    directory that holds the parameter file. Raises ValueError when the file's
    SHA-256 differs from the one the manifest records.
    """
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    variant = str(manifest.get("variant", "weighted"))
    if "network" not in manifest:
        return _linear_network(manifest, spec, variant)

    if directory is None:
        raise ValueError(
            f"the {variant} manifest keeps its parameters in {PARAMETERS_FILE}; "
            "pass the model version directory that contains it"
        )
    arrays = _read_arrays(directory, manifest["network"]["parameters"])
    return _deep_network(arrays, spec, variant)


def _linear_network(
    manifest: dict[str, Any], spec: FeatureSpec, variant: str
) -> Network:
    heads = [manifest["linear"]]
    if "click" in manifest:
        heads.append(manifest["click"])

    names = heads[0]["weights"].keys()
    tables = {
        name: np.column_stack([np.asarray(h["weights"][name]) for h in heads])
        for name in names
    }
    bias = np.array([float(h["bias"]) for h in heads])
    return Network(variant, spec, tables, bias, click_head=len(heads) == 2)


def _read_arrays(directory: Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    path = directory / record["file"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != record["sha256"]:
        raise ValueError(
            f"{path} has SHA-256 {digest}, but the manifest records "
            f"{record['sha256']}; export the model again"
        )
    with np.load(path) as archive:
        return {name: archive[name].astype(np.float64) for name in archive.files}


def _deep_network(
    arrays: dict[str, np.ndarray], spec: FeatureSpec, variant: str
) -> Network:
    tables = {
        name.removeprefix(TABLE_PREFIX): array
        for name, array in arrays.items()
        if name.startswith(TABLE_PREFIX)
    }
    layers = []
    while f"dense.{len(layers)}.weights" in arrays:
        index = len(layers)
        layers.append(
            Dense(arrays[f"dense.{index}.weights"], arrays[f"dense.{index}.bias"])
        )
    return Network(variant, spec, tables, arrays[FIRST_BIAS], tuple(layers))
