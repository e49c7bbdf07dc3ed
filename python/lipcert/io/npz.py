"""lipcert's own format: one .npz with the input shape and each layer's kind and parameters."""
from __future__ import annotations

import json
import zipfile

import numpy as np

from ..errors import InvalidNetworkError
from ..layers import LAYER_TYPES
from ..network import Network

FORMAT = "lipcert-network"
VERSION = 1


def save_npz(net: Network, path) -> None:
    arrays = {"format": np.array(FORMAT), "version": np.array(VERSION),
              "input_shape": np.array(net.input_shape), "n_layers": np.array(len(net.layers)),
              "metadata": np.array(json.dumps(_json_metadata(net.metadata)))}
    for i, layer in enumerate(net.layers):
        arrays[f"layer{i}.kind"] = np.array(type(layer).__name__)
        for key, value in layer.params().items():
            arrays[f"layer{i}.{key}"] = np.asarray(value)
    np.savez(path, **arrays)


def load_npz(path) -> Network:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InvalidNetworkError(f"{path}: not a readable .npz file ({e})") from None
    with data:
        if "format" not in data or str(data["format"]) != FORMAT:
            raise InvalidNetworkError(f"{path}: not a lipcert network file (missing 'format' = {FORMAT!r})")
        if int(data["version"]) > VERSION:
            raise InvalidNetworkError(f"{path}: written by a newer lipcert (format version {int(data['version'])})")
        try:
            n_layers = int(data["n_layers"])
            input_shape = tuple(int(d) for d in data["input_shape"])
            layers = []
            for i in range(n_layers):
                kind = str(data[f"layer{i}.kind"])
                if kind not in LAYER_TYPES:
                    raise InvalidNetworkError(f"{path}: layer {i} has unknown kind {kind!r}")
                prefix = f"layer{i}."
                params = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix) and k != prefix + "kind"}
                layers.append(LAYER_TYPES[kind].from_params(params))
            metadata = json.loads(str(data["metadata"])) if "metadata" in data else {}
        except KeyError as e:
            raise InvalidNetworkError(f"{path}: malformed lipcert file, missing {e}") from None
    return Network(layers, input_shape, metadata)


def _json_metadata(metadata):
    out = {}
    for k, v in metadata.items():
        out[k] = v.tolist() if isinstance(v, np.ndarray) else v
    return out
