"""`certify`: certified robustness radii from logit margins and Lipschitz bounds of logit differences.

For a correctly classified x with predicted class c, no perturbation with ||delta||_p < r changes the
prediction, where r = min over j != c of (f_c(x) - f_j(x)) / L_cj and L_cj bounds the Lipschitz
constant of x -> f_c(x) - f_j(x) (each pair bounded separately, which is tighter than the usual
margin / (sqrt(2) L)). Margins are lower-bounded by outward-rounded interval arithmetic on the
single-point box {x} for ReLU/LeakyReLU/MaxMin networks; other networks use the floating-point margin with a
relative allowance, and the result says so (`margins_certified`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np

from . import _core
from .api import AUTO_SEQLIP_SECONDS, GLOBAL_METHODS, auto_global_methods, global_upper_bound, tightest
from .layers import ReLU
from .network import Network
from .norms import parse_norm

# Allowance for floating-point error in margins of networks without an interval forward pass.
_FLOAT_MARGIN_RELATIVE = 1e-9


@dataclass
class Certification:
    """Per-sample certified radii and the accuracies at `eps`.

    radii[k]: no perturbation of norm < radii[k] changes the prediction on X[k] (0 when misclassified).
    certified: every Lipschitz bound used is a proof and the margins are sound lower bounds.
    pair_bounds[i, j]: the bound used for x -> f_i(x) - f_j(x).
    """

    clean_accuracy: float
    certified_accuracy: float
    radii: np.ndarray
    eps: float
    norm: float
    method: str
    certified: bool
    margins_certified: bool
    pair_bounds: np.ndarray
    stats: Dict[str, Any] = field(default_factory=dict)

    def certified_accuracy_at(self, eps: float) -> float:
        return float(np.mean(self.radii > eps)) if self.radii.size else 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {"clean_accuracy": self.clean_accuracy, "certified_accuracy": self.certified_accuracy,
                "eps": self.eps, "norm": "inf" if math.isinf(self.norm) else self.norm, "method": self.method,
                "certified": self.certified, "margins_certified": self.margins_certified,
                "radii": self.radii.tolist(), "stats": self.stats}


def certify(net: Network, X, y, eps: float, norm=2, method: str = "auto", device: str = "auto") -> Certification:
    """Certified accuracy of `net` on (X, y) at radius `eps` in the l_norm input norm.

    method: a global upper-bound method ("naive", "autolip", "seqlip", "sdp", "sdp-layer") or "auto"
    (the tightest certified of those that fit, per pair of classes). seqlip's pair-of-layers searches
    share AUTO_SEQLIP_SECONDS over all pairs of classes.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a lipcert.Network, not {type(net).__name__}")
    p_in, _ = parse_norm(norm)
    x = np.asarray(X, dtype=np.float64)
    if x.ndim == len(net.input_shape):
        x = x[None]
    if x.shape[1:] != tuple(net.input_shape):
        raise ValueError(f"X must have shape (n, {', '.join(map(str, net.input_shape))}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("X contains NaN or inf")
    labels = np.asarray(y).ravel()
    if labels.shape[0] != x.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y must hold {x.shape[0]} integer class labels")
    classes = net.output_size
    if classes < 2:
        raise ValueError("certify needs a classifier with at least two outputs")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes})")
    if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
        raise ValueError("eps must be a finite number >= 0")
    if method != "auto" and method not in GLOBAL_METHODS:
        raise ValueError(f"certify uses a global bound: method must be auto or one of {', '.join(GLOBAL_METHODS)}")

    logits = net(x)
    predicted = logits.argmax(axis=1)
    pair_bounds, all_certified, chosen = _pair_bounds(net, p_in, method, device)
    margins, margins_certified = _margin_lower_bounds(net, x, predicted, logits)
    radii = np.zeros(x.shape[0])
    for k in range(x.shape[0]):
        if predicted[k] != labels[k]:
            continue
        c = predicted[k]
        ratios = [margins[k, j] / pair_bounds[c, j] for j in range(classes) if j != c]
        # Rounded down: the radius is a guarantee.
        radii[k] = max(0.0, math.nextafter(min(ratios), 0.0)) if all(np.isfinite(ratios)) else 0.0
    clean = float(np.mean(predicted == labels)) if labels.size else 0.0
    note = ("the network is not 1-Lipschitz by construction: its radii rest on the Lipschitz bounds of "
            f"method {method!r}")
    return Certification(clean_accuracy=clean, certified_accuracy=float(np.mean(radii > eps)) if labels.size else 0.0,
                         radii=radii, eps=float(eps), norm=p_in, method=method,
                         certified=bool(all_certified and margins_certified), margins_certified=margins_certified,
                         pair_bounds=pair_bounds, stats={"pair_methods": chosen, "note": note})


def _pair_bounds(net: Network, p_in: float, method: str, device: str):
    classes = net.output_size
    bounds = np.full((classes, classes), np.inf)
    chosen = {}
    all_certified = True
    # seqlip's searches share AUTO_SEQLIP_SECONDS over all pairs of classes.
    seqlip_seconds = AUTO_SEQLIP_SECONDS / max(1, classes * (classes - 1) // 2)
    for i in range(classes):
        for j in range(i + 1, classes):
            row = np.zeros(classes)
            row[i], row[j] = 1.0, -1.0
            pair = net.with_output(row)
            names = auto_global_methods(pair, None) if method == "auto" else [method]
            results = {n: global_upper_bound(pair, n, p_in, 2.0, device=device, time_limit=seqlip_seconds) for n in names}
            best = tightest(results)
            upper, certified, _ = results[best]
            bounds[i, j] = bounds[j, i] = upper
            chosen[f"{i}-{j}"] = best
            all_certified &= bool(certified)
    return bounds, all_certified, chosen


def _margin_lower_bounds(net: Network, x: np.ndarray, predicted: np.ndarray, logits: np.ndarray):
    """margins[k, j] <= f_c(x_k) - f_j(x_k) for c = predicted[k] (+inf at j = c)."""
    n, classes = x.shape[0], net.output_size
    margins = np.full((n, classes), np.inf)
    piecewise_linear = net.piecewise_linear
    flat = x.reshape(n, -1)
    for c in np.unique(predicted):
        rows = np.flatnonzero(predicted == c)
        others = [j for j in range(classes) if j != c]
        if piecewise_linear:
            differences = -np.eye(classes)[others]
            differences[:, c] = 1.0
            # The margins are the pre-activations of a ReLU appended to x -> D f(x); the core bounds them
            # by outward-rounded interval arithmetic on the box [x, x].
            probe = Network(net.with_output(differences).layers + [ReLU()], net.input_shape)
            results = _core.bound_subdomains(probe._core, flat[rows], flat[rows], [], 2.0, 2.0, None)
            for k, r in zip(rows, results):
                margins[k, others] = np.asarray(r["pre_lower"][-1])
        else:
            raw = logits[rows, c][:, None] - logits[rows][:, others]
            scale = np.abs(logits[rows, c])[:, None] + np.abs(logits[rows][:, others]) + 1.0
            margins[np.ix_(rows, others)] = raw - _FLOAT_MARGIN_RELATIVE * scale
    return margins, piecewise_linear
