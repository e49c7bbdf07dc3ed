"""LipSDP (`sdp`, `sdp-layer`) against its peers, measured in the same process.

Suites:
  eclipse  the ECLipsE random grid (recipe in ../shared/data/README.md): lipcert sdp vs ECLipsE and
           ECLipsE-Fast (pip package eclipse-nn) and, where it fits, a one-big-LMI LipSDP-Neuron
           through cvxpy + Clarabel (the reference optimum).
  mnist    GLipSDP's MNIST MLPs (../shared/data/glipsdp/mnist): bound and time beside GLipSDP's
           published times (MATLAB + MOSEK).
  mnist-cnn  GLipSDP's MNIST CNNs (28 x 28, too large to unroll: sdp is channel-wise LipSDP) beside
           autolip, the sampled lower bound and GLipSDP's published bounds and times
           (results/results_all_CNN_trained.mat).

    python benchmarks/bench_sdp.py --suite eclipse --layers 2 5 10 --widths 20 40 --out sdp.md
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import lipcert as lc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# GLipSDP (layer-wise DP, MOSEK) seconds for width-64 MLPs using d weight matrices (data README).
GLIPSDP_SECONDS_W64 = {2: 0.39, 4: 1.90, 8: 5.09, 16: 14.1, 32: 29.4, 64: 65.9}


def eclipse_weights(layers: int, width: int) -> list[np.ndarray]:
    rng = np.random.RandomState(width * 7 + layers * 13)
    sizes = [4] + [width] * (layers - 1) + [1]
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(size=(n_out, n_in))
        norm = rng.uniform(0.4, 1.8)
        weights.append(w * norm / np.linalg.norm(w, 2))
    return weights


def relu_net(weights) -> lc.Network:
    layers = []
    for i, w in enumerate(weights):
        layers.append(lc.Dense(w))
        if i < len(weights) - 1:
            layers.append(lc.ReLU())
    return lc.Network(layers, input_shape=(weights[0].shape[1],))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def cvxpy_lipsdp(weights) -> float:
    """One-big-LMI LipSDP-Neuron (Fazlyab et al. eq. (10)) for ReLU, through cvxpy + Clarabel."""
    import cvxpy as cp

    n0, hidden = weights[0].shape[1], [w.shape[0] for w in weights[:-1]]
    big_n = sum(hidden)
    a = np.zeros((big_n, n0 + big_n))
    row = col = 0
    for w in weights[:-1]:
        a[row:row + w.shape[0], col:col + w.shape[1]] = w
        row, col = row + w.shape[0], col + w.shape[1]
    b = np.hstack([np.zeros((big_n, n0)), np.eye(big_n)])
    rho, t = cp.Variable(), cp.Variable(big_n, nonneg=True)
    tm = cp.diag(t)
    first = np.zeros((n0 + big_n,) * 2)
    first[:n0, :n0] = np.eye(n0)
    last = np.zeros_like(first)
    last[-hidden[-1]:, -hidden[-1]:] = weights[-1].T @ weights[-1]
    m = a.T @ tm @ b + b.T @ tm @ a - 2 * b.T @ tm @ b - rho * first + last
    cp.Problem(cp.Minimize(rho), [(m + m.T) / 2 << 0]).solve(solver=cp.CLARABEL)
    return math.sqrt(rho.value)


def eclipse_suite(layer_counts, widths, cvxpy_max_neurons: int) -> list[dict]:
    rows = []
    for layers in layer_counts:
        for width in widths:
            weights = eclipse_weights(layers, width)
            net = relu_net(weights)
            row = {"layers": layers, "width": width}
            for method in ("sdp", "sdp-layer"):
                b = lc.lipschitz(net, method=method, time_limit=0.1)  # the lower-bound search is not timed here
                row[method] = (b.upper if b.certified else math.nan, b.stats["time_s"], b.stats.get("newton_steps"))
            try:
                import torch
                from eclipse_nn import LipConstEstimator

                tensors = [torch.tensor(w, dtype=torch.float64) for w in weights]
                for name in ("ECLipsE", "ECLipsE_Fast"):
                    value, seconds = timed(lambda: float(LipConstEstimator(weights=tensors).estimate(method=name)))
                    row[name] = (value, seconds, None)
            except ImportError:
                pass
            if (layers - 1) * width <= cvxpy_max_neurons:
                value, seconds = timed(lambda: cvxpy_lipsdp(weights))
                row["cvxpy"] = (value, seconds, None)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    return rows


def mnist_suite(depths) -> list[dict]:
    rows = []
    for depth in depths:
        net = lc.load(DATA / "glipsdp" / "mnist" / f"mlp_L{depth + 1}_W64.onnx")
        row = {"weights": depth}
        for method in ("sdp", "sdp-layer", "autolip"):
            b = lc.lipschitz(net, method=method, time_limit=0.1)
            row[method] = (b.upper, b.stats["time_s"], b.stats.get("newton_steps"), b.stats.get("solver_status"))
        row["glipsdp_published_s"] = GLIPSDP_SECONDS_W64.get(depth)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    return rows


# GLipSDP's published CNN results (L_SDP_mat, time_SDP_mat): (channels, conv layers) -> (bound, s).
GLIPSDP_CNN = {(8, 3): (7.64876, 0.132), (8, 5): (28.4899, 0.302), (8, 9): (274.005, 0.310), (8, 17): (11323.6, 0.888),
               (16, 3): (8.02681, 1.58), (16, 5): (36.0997, 4.26), (16, 9): (177.640, 4.67), (16, 17): (8080.77, 16.3),
               (32, 3): (7.85208, 24.4), (32, 5): (38.2056, 124), (32, 9): (261.268, 269), (32, 17): (10573.7, 548)}


def mnist_cnn_suite(convs, channels) -> list[dict]:
    rows = []
    for ch in channels:
        for c in convs:
            net = lc.load(DATA / "glipsdp" / "mnist" / f"cnn_C{c}_CH{ch}.onnx")
            sdp = lc.lipschitz(net, method="sdp")
            autolip = lc.lipschitz(net, method="autolip")
            row = {"convs": c, "channels": ch, "sdp": (sdp.upper, sdp.stats["time_s"], sdp.stats["newton_steps"],
                                                        sdp.stats["solver_status"], sdp.certified),
                   "autolip": (autolip.upper, autolip.stats["time_s"]), "lower": autolip.lower,
                   "glipsdp": GLIPSDP_CNN.get((ch, c))}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    return rows


def mnist_cnn_markdown(rows) -> str:
    out = ["| model | sdp (channel-wise) | s | Newton steps | autolip | s | sampled lower | GLipSDP published | s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, a, g = r["sdp"], r["autolip"], r["glipsdp"] or ("–", "–")
        out.append(f"| C{r['convs']}-CH{r['channels']} | {s[0]:.6g}{'' if s[4] else ' (estimate)'} | {s[1]:.3g} | "
                   f"{s[2]} | {a[0]:.6g} | {a[1]:.3g} | {r['lower']:.4g} | {g[0]} | {g[1]} |")
    return "\n".join(out)


def eclipse_markdown(rows) -> str:
    out = ["| layers | width | sdp | s | sdp-layer | s | ECLipsE | s | ECLipsE-Fast | s | cvxpy LipSDP | s | sdp / cvxpy - 1 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [str(r["layers"]), str(r["width"])]
        for key in ("sdp", "sdp-layer", "ECLipsE", "ECLipsE_Fast", "cvxpy"):
            value = r.get(key)
            cells += [f"{value[0]:.6g}", f"{value[1]:.3g}"] if value else ["–", "–"]
        cells.append(f"{r['sdp'][0] / r['cvxpy'][0] - 1:.1e}" if "cvxpy" in r else "–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def mnist_markdown(rows) -> str:
    out = ["| weight matrices | sdp | s | steps | status | sdp-layer | s | autolip | GLipSDP published s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, sl, al = r["sdp"], r["sdp-layer"], r["autolip"]
        out.append(f"| {r['weights']} | {s[0]:.6g} | {s[1]:.3g} | {s[2]} | {s[3]} | {sl[0]:.6g} | {sl[1]:.3g} | "
                   f"{al[0]:.6g} | {r['glipsdp_published_s']} |")
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["eclipse", "mnist", "mnist-cnn"], default="eclipse")
    p.add_argument("--layers", type=int, nargs="+", default=[2, 5, 10])
    p.add_argument("--widths", type=int, nargs="+", default=[20, 40])
    p.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--convs", type=int, nargs="+", default=[3, 5, 9, 17])
    p.add_argument("--channels", type=int, nargs="+", default=[8, 16])
    p.add_argument("--cvxpy-max-neurons", type=int, default=120)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.suite == "eclipse":
        table = eclipse_markdown(eclipse_suite(args.layers, args.widths, args.cvxpy_max_neurons))
    elif args.suite == "mnist":
        table = mnist_markdown(mnist_suite(args.depths))
    else:
        table = mnist_cnn_markdown(mnist_cnn_suite(args.convs, args.channels))
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
