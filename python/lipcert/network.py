"""The network IR on the Python side: a validated chain of layers backed by the C++ core."""
from __future__ import annotations

from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

from . import _core
from .errors import InvalidNetworkError
from .layers import Dense, Layer


class Network:
    """A feed-forward network `layers` applied to inputs of shape `input_shape` ((n,) or (C, H, W)).

    Validation happens here: shapes must chain and weights must be finite, otherwise
    `InvalidNetworkError` names the layer and the problem.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Iterable[int], metadata: Dict | None = None):
        layers = list(layers)
        if not layers:
            raise InvalidNetworkError("the network has no layers")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a lipcert layer")
        try:
            shape = tuple(int(d) for d in input_shape)
        except TypeError:
            raise TypeError("input_shape must be a tuple of ints, (n,) or (C, H, W)") from None
        if len(shape) not in (1, 3) or min(shape) <= 0:
            raise InvalidNetworkError(f"input_shape must be (n,) or (C, H, W) with positive sizes, got {shape}")
        try:
            self._core = _core.Network(list(shape), [layer.to_core() for layer in layers])
        except ValueError as e:
            raise InvalidNetworkError(str(e)) from None
        self.layers = layers
        self.input_shape = shape
        self._shapes = [(tuple(i), tuple(o)) for i, o in self._core.layer_shapes()]
        self.output_shape = self._shapes[-1][1]
        self.metadata = dict(metadata or {})

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def piecewise_linear(self) -> bool:
        """Every activation is piecewise linear (ReLU, LeakyReLU, MaxMin): the networks that branch
        and bound (on a bounded domain) and the core's interval bounds take."""
        return all(l.is_piecewise_linear for l in self.layers if l.is_activation)

    def layer_shapes(self) -> list[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
        """(input shape, output shape) of every layer."""
        return list(self._shapes)

    def _batch(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.input_shape and not (x.ndim == 2 and x.shape[1] == self.input_size):
            raise ValueError(f"expected inputs of shape (batch, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("inputs contain NaN or inf")
        return np.ascontiguousarray(x.reshape(x.shape[0], self.input_size))

    def __call__(self, x) -> np.ndarray:
        """Forward pass, batch first: x of shape (batch, *input_shape)."""
        xb = self._batch(x)
        return self._core.forward(xb).reshape((xb.shape[0],) + self.output_shape)

    def jacobian(self, x) -> np.ndarray:
        """Jacobians (batch, output_size, input_size); at a ReLU kink the derivative 0 is used (at a
        MaxMin tie, the pair counts as kept)."""
        return self._core.jacobian(self._batch(x))

    def vjp(self, x, u) -> np.ndarray:
        """J(x_b)^T u_b for every sample: (batch, input_size)."""
        xb = self._batch(x)
        u = np.ascontiguousarray(np.asarray(u, dtype=np.float64).reshape(xb.shape[0], self.output_size))
        return self._core.vjp(xb, u)

    def with_output(self, c) -> "Network":
        """The network x -> C f(x) for a matrix C of shape (k, output_size)."""
        c = np.asarray(c, dtype=np.float64)
        if c.ndim == 1:
            c = c[None, :]
        if c.ndim != 2 or c.shape[1] != self.output_size:
            raise ValueError(f"output matrix must have shape (k, {self.output_size}), got {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError("output matrix contains NaN or inf")
        from .layers import Flatten

        last = self.layers[-1]
        if isinstance(last, Dense):
            # Merged, so that layer-wise bounds see C W rather than C and W apart — but only where the
            # floating-point product is provably exact: bounds and margins must describe x -> C f(x).
            weight, bias = _exact_product(c, last.weight), _exact_product(c, last.bias[:, None])
            if weight is not None and bias is not None:
                return Network(self.layers[:-1] + [Dense(weight, bias[:, 0])], self.input_shape, self.metadata)
        tail = [Flatten()] if len(self.output_shape) == 3 else []
        return Network(self.layers + tail + [Dense(c, np.zeros(c.shape[0]))], self.input_shape, self.metadata)

    def save(self, path) -> None:
        """Writes lipcert's own .npz format (read back by `lipcert.load`)."""
        from .io.npz import save_npz

        save_npz(self, path)

    def __repr__(self) -> str:
        body = "\n".join(f"  {i}: {layer!r} -> {out}" for i, (layer, (_, out)) in enumerate(zip(self.layers, self._shapes)))
        return f"Network(input_shape={self.input_shape}\n{body}\n)"


def _exact_product(c: np.ndarray, m: np.ndarray):
    """fl(c @ m) when every entry is provably exact, else None. Proved for rows of c with one nonzero
    +-2^k (a scaling) or two nonzeros +-1 (one addition, checked error-free by TwoSum)."""
    out = np.empty((c.shape[0], m.shape[1]))
    for i, row in enumerate(c):
        nonzero = np.flatnonzero(row)
        if nonzero.size == 0:
            out[i] = 0.0
        elif nonzero.size == 1:
            mantissa, _ = np.frexp(abs(row[nonzero[0]]))
            if mantissa != 0.5:
                return None
            out[i] = row[nonzero[0]] * m[nonzero[0]]
            if not np.all(np.isfinite(out[i])) or np.any((out[i] != 0) & (np.abs(out[i]) < np.finfo(float).tiny)) \
                    or np.any((out[i] == 0) & (m[nonzero[0]] != 0)):
                return None  # overflow, or a subnormal result that may have lost bits
        elif nonzero.size == 2 and np.all(np.abs(row[nonzero]) == 1.0):
            a, b = row[nonzero[0]] * m[nonzero[0]], row[nonzero[1]] * m[nonzero[1]]
            total = a + b
            virtual = total - a
            error = (a - (total - virtual)) + (b - virtual)
            if np.any(error != 0) or not np.all(np.isfinite(total)):
                return None
            out[i] = total
        else:
            return None
    return out
