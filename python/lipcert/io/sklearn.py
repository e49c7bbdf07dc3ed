"""scikit-learn MLPs: a fitted MLPClassifier/MLPRegressor, or its `coefs_` (in x out matrices) and
`intercepts_` (as LipBaB and ExLipBaB publish their networks)."""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedLayerError
from ..layers import Dense, ReLU, Sigmoid, Tanh
from ..network import Network

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}


def from_sklearn(model_or_coefs, intercepts=None, activation: str = "relu") -> Network:
    """Network of an MLP: hidden layers with `activation`, a linear output layer (the output
    activation, e.g. softmax, is not part of the network: bound the logits)."""
    if intercepts is None:
        coefs, intercepts = model_or_coefs.coefs_, model_or_coefs.intercepts_
        activation = model_or_coefs.activation
    else:
        coefs = model_or_coefs
    if activation not in ACTIVATIONS:
        raise UnsupportedLayerError(f"scikit-learn activation {activation!r} is not supported; "
                                    f"supported: {', '.join(ACTIVATIONS)}")
    if len(coefs) != len(intercepts) or len(coefs) == 0:
        raise ValueError("coefs and intercepts must be non-empty and of the same length")
    layers = []
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        layers.append(Dense(np.asarray(w, dtype=np.float64).T, np.asarray(b, dtype=np.float64).ravel()))
        if i < len(coefs) - 1 and ACTIVATIONS[activation] is not None:
            layers.append(ACTIVATIONS[activation]())
    return Network(layers, (np.asarray(coefs[0]).shape[0],))
