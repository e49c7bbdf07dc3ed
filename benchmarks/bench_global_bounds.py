"""Times the global upper-bound methods against a dense numpy SVD baseline run in the same process.

    python benchmarks/bench_global_bounds.py [--widths 256 512 1024 2048] [--depth 3] [--repeat 3]

Networks: depth hidden layers of width w on inputs of width w (Gaussian weights / sqrt(w), ReLU).
Baseline: the product of np.linalg.norm(W, 2) over the layers (LAPACK SVD, not certified).
Reports best-of-repeat seconds, the ratio to the baseline, and how far each bound lies above it.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import lipcert as lc
from lipcert.methods.autolip import autolip_bound
from lipcert.methods.naive import naive_bound


def best_time(fn, repeat):
    best, result = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print("| width | numpy SVD product (s) | naive (s) | ratio | autolip (s) | ratio | naive / SVD - 1 | autolip / SVD - 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for w in args.widths:
        rng = np.random.default_rng(w)
        layers = []
        for i in range(args.depth):
            layers += [lc.Dense(rng.normal(size=(w, w)) / math.sqrt(w), np.zeros(w)), lc.ReLU()]
        layers.append(lc.Dense(rng.normal(size=(10, w)) / math.sqrt(w), np.zeros(10)))
        net = lc.Network(layers, (w,))
        weights = [l.weight for l in net.layers if isinstance(l, lc.Dense)]
        t_svd, svd_product = best_time(lambda: math.prod(np.linalg.norm(W, 2) for W in weights), args.repeat)
        t_naive, (naive, _, _) = best_time(lambda: naive_bound(net, 2.0, 2.0), args.repeat)
        t_auto, (auto, _, stats) = best_time(lambda: autolip_bound(net, 2.0, 2.0), args.repeat)
        iters = max(l["iterations"] for l in stats["layers"])
        print(f"| {w} | {t_svd:.3f} | {t_naive:.3f} | {t_naive / t_svd:.2f} | {t_auto:.3f} | {t_auto / t_svd:.2f} "
              f"| {naive / svd_product - 1:.1e} | {auto / svd_product - 1:.1e} (Krylov steps {iters}) |", flush=True)


if __name__ == "__main__":
    main()
