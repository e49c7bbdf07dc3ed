"""Branch and bound (`bab`) on LipBaB's networks, LipMIP's and Shi et al.'s random suites and ExLipBaB's global ones.

    python benchmarks/bench_bab.py [--shared ../shared/data] [--time-limit 300] [--plot bounds.png]

Times the C++ engine alone (lipcert._core.lipschitz_bab, unseeded lower bound, best of 3, after a
warm-up call that starts the thread pool and the per-thread LP solvers) to an exact result
(tol 1e-9) and to a 1% gap, and the whole lipschitz(method="bab") call (timed the same way). LipBaB's own times (pure
Python + cvxopt/GLPK, measured on one of these 2-core machines, p = 2) come from shared/data/README.md.
The global section (domain = all of R^n, lipcert._core.lipschitz_bab_global) sets ExLipBaB's networks
beside its published exact values and its own times there. Shi et al. (2022)'s suite is 16-w-w-10
random ReLU nets, w in {16, 32, 64}, in the l-inf -> l-inf norm; no recipe fixes its domains here, so
each net gets l-inf balls of radius 0.03 and 0.1 around a random centre; the maxmin section runs
the same suite with MaxMin activations (GroupSort of size 2, pairs split on the sign of a - b).
--plot draws lower and upper bound against time for the largest of them (matplotlib).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import lipcert as lc
from lipcert import _core
from lipcert.methods.bab import INPUT_BISECTION

LIPBAB = {  # name: (box side, LipBaB's time for p = 2 in seconds, published p = 2 value)
    "iris_net_(4,5,5,3)": (1.0, 0.065, 6.771454513402937),
    "SDnet_(10,15,10,3)": (0.1, 0.44, 9.530716922306004),
    "SDnet_(10,20,15,10,3)": (0.1, 6.05, 40.05651016370293),
    "SDnet_(10,30,30,30,3)": (0.1, 186.6, 19.462799793264388),
}


EXLIPBAB = {  # name: (ExLipBaB's time in seconds or None, published exact global l2 value or None)
    "iris_net_(4x6x6x3)_ReLU": (0.75, 11.634355134114875),
    "abalone_net_(9x16x16x1)_ReLU": (82.0, 11.121602332235268),
    "wine_net_(11x12x12x1)_ReLU": (155.0, 1.7433699967107172),
    "wine_net_(11x24x24x1)_ReLU": (None, None),
    "bike_net_(13x20x16x8x3)_ReLU": (None, None),
}


def load_lipbab(directory, name):
    """LipBaB's networks: scikit-learn coefs_ / intercepts_ saved as numpy object arrays."""
    return lc.from_sklearn(np.load(directory / f"{name}_weights.npy", allow_pickle=True),
                           np.load(directory / f"{name}_biases.npy", allow_pickle=True))


def random_net(rng, sizes, bias_scale=0.1, activation=lc.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lc.Dense(rng.normal(size=(sizes[i + 1], sizes[i])) / math.sqrt(sizes[i]),
                               rng.normal(size=sizes[i + 1]) * bias_scale))
        if i < len(sizes) - 2:
            layers.append(activation())
    return lc.Network(layers, (sizes[0],))


def lipmip_suite(seed=0):
    """LipMIP's random suites: [2, 20w, 20w, 20w, 2] and [2] + [20] * d + [2], with the margin output
    c = [1, -1]; (sizes, network, ball centre) each (the ball radius is 0.1)."""
    rng = np.random.default_rng(seed)
    suites = [[2, 20 * w, 20 * w, 20 * w, 2] for w in (1, 2)] + [[2] + [20] * d + [2] for d in (3, 5, 7)]
    for sizes in suites:
        net = random_net(rng, sizes).with_output(np.array([[1.0, -1.0]]))
        yield sizes, net, rng.normal(size=2)


def shi_suite(seed=0, activation=lc.ReLU):
    """Shi et al. (2022)'s 16-w-w-10 nets; (width, network, ball centre) each."""
    rng = np.random.default_rng(seed)
    for width in (16, 32, 64):
        yield width, random_net(rng, [16, width, width, 10], activation=activation), rng.normal(size=16)


# Runs shorter than this are repeated until they add up to it (at most MAX_REPEAT times): a
# millisecond run's best of 3 is mostly the noise of a shared machine.
SHORT_RUNS_SECONDS, MAX_REPEAT = 0.5, 500


def best_time(call, repeat=3):
    """Best-of-`repeat` seconds of call() (more repeats for short runs), and its last result."""
    best, spent, runs = math.inf, 0.0, 0
    while runs < repeat or (spent < SHORT_RUNS_SECONDS and runs < MAX_REPEAT):
        runs += 1
        t = time.perf_counter()
        r = call()
        best = min(best, time.perf_counter() - t)
        spent += time.perf_counter() - t
    return best, r


def engine(net, lo, hi, p, q, tol, limit, repeat=3, bisection=0):
    """Best-of-`repeat` seconds of the engine alone (more repeats for short runs), and its result."""
    return best_time(lambda: _core.lipschitz_bab(net._core, lo, hi, p, q, tol, limit, 10_000_000, 0.0,
                                                 np.zeros(net.input_size), None, input_bisection=bisection), repeat)


def global_engine(net, p, tol, limit, repeat=3):
    """Best-of-`repeat` seconds of the global search alone, and its result."""
    return best_time(lambda: _core.lipschitz_bab_global(net._core, p, p, tol, limit, 10_000_000, 0.0,
                                                        np.zeros(net.input_size), None), repeat)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--sections", default="local,lipmip,shi,maxmin,global", help="comma-separated subset")
    parser.add_argument("--plot", type=Path, help="PNG of the bounds against time on Shi et al.'s widest net")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")

    warm = load_lipbab(args.shared / "lipbab", "iris_net_(4,5,5,3)")
    engine(warm, np.zeros(4), np.ones(4), 2.0, 2.0, 1e-9, 10.0, repeat=1)
    if "local" in sections:
        local_section(args)
    if "lipmip" in sections:
        lipmip_section(args)
    if "shi" in sections:
        shi_section(args)
    if "maxmin" in sections:
        shi_section(args, lc.MaxMin)
    if args.plot:
        plot_bounds(args)
    if "global" in sections:
        global_section(args)


def local_section(args):
    print("## LipBaB networks (box [0, side]^n, p -> p)\n")
    print("| network | p | exact value | engine to exact (s) | nodes | engine to 1% (s) | lipschitz() (s) | LipBaB p=2 (s) "
          "| speed-up (engine / lipschitz()) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (side, lipbab_time, published) in LIPBAB.items():
        net = load_lipbab(args.shared / "lipbab", name)
        lo, hi = np.zeros(net.input_size), np.full(net.input_size, side)
        for p in (2.0, 1.0, math.inf):
            t_exact, r = engine(net, lo, hi, p, p, 1e-9, args.time_limit)
            t_gap, _ = engine(net, lo, hi, p, p, 1e-2, args.time_limit)
            t_call, _ = best_time(lambda: lc.lipschitz(net, method="bab", norm=p, domain=lc.Box(lo, hi), tol=1e-9,
                                                       time_limit=args.time_limit))
            speed = f"{lipbab_time / t_exact:.0f}x / {lipbab_time / t_call:.0f}x" if p == 2.0 else ""
            value = f"{r['upper']:.12g}" if r["exact"] else f"[{r['lower']:.6g}, {r['upper']:.6g}] ({r['status']})"
            print(f"| {name} | {p:g} | {value} | {t_exact:.4f} | {r['nodes']} | {t_gap:.4f} | {t_call:.4f} "
                  f"| {lipbab_time if p == 2.0 else ''} | {speed} |", flush=True)



def lipmip_section(args):
    print("\n## LipMIP suites (l-inf balls, margin c = [1, -1], l-inf -> l1 of the margin)\n")
    print("Input bisection is what lipschitz() uses on these 2-D inputs (threshold "
          f"{INPUT_BISECTION}); neuron splits only beside it.\n")
    print("| network | radius | value | to exact (s) | nodes | to 1% (s) | neuron splits only: to exact (s) | nodes | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sizes, net, center in lipmip_suite():
        for radius in (0.1, 1.0):
            lo, hi = center - radius, center + radius
            t, r = engine(net, lo, hi, math.inf, 1.0, 1e-9, args.time_limit, bisection=INPUT_BISECTION)
            t_gap, _ = engine(net, lo, hi, math.inf, 1.0, 1e-2, args.time_limit, bisection=INPUT_BISECTION)
            t_neuron, n = engine(net, lo, hi, math.inf, 1.0, 1e-9, args.time_limit, repeat=1)
            value = f"{r['upper']:.10g}" if r["exact"] else f"[{r['lower']:.6g}, {r['upper']:.6g}] ({r['status']})"
            neuron = f"{t_neuron:.4f}" if n["exact"] else f"- ({n['status']}, upper {n['upper']:.4g})"
            print(f"| {'-'.join(map(str, sizes))} | {radius} | {value} | {t:.4f} | {r['nodes']} | {t_gap:.4f} "
                  f"| {neuron} | {n['nodes']} | {t_neuron / t:.1f}x |", flush=True)


def shi_section(args, activation=lc.ReLU):
    name = "MaxMin" if activation is lc.MaxMin else "ReLU"
    print(f"\n## Shi et al.'s suite with {name} (16-w-w-10, l-inf ball around a random centre, l-inf -> l-inf)\n")
    print("| network | radius | value | engine to exact (s) | nodes | engine to 1% (s) |")
    print("|---|---|---|---|---|---|")
    for width, net, center in shi_suite(activation=activation):
        for radius in (0.03, 0.1):
            lo, hi = center - radius, center + radius
            t, r = engine(net, lo, hi, math.inf, math.inf, 1e-9, args.time_limit, repeat=1)
            t_gap, g = engine(net, lo, hi, math.inf, math.inf, 1e-2, args.time_limit, repeat=1)
            value = f"{r['upper']:.10g}" if r["exact"] else f"[{r['lower']:.6g}, {r['upper']:.6g}] ({r['status']})"
            gap = f"{t_gap:.3f}" if g["exact"] else f"- ({g['status']})"
            print(f"| 16-{width}-{width}-10 | {radius} | {value} | {t:.3f} | {r['nodes']} | {gap} |", flush=True)


def plot_bounds(args):
    """Certified lower and upper bound against time, from the engine's progress reports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, net, center = list(shi_suite())[-1]
    trace = []
    start = time.perf_counter()
    r = _core.lipschitz_bab(net._core, center - 0.1, center + 0.1, math.inf, math.inf, 1e-9, args.time_limit,
                            10_000_000, 0.0, np.zeros(net.input_size), lambda *state: trace.append(state) or True,
                            progress_interval=0.05)
    trace.append((r["lower"], r["upper"], time.perf_counter() - start))
    seconds = [s[2] for s in trace]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(seconds, [s[1] for s in trace], where="post", label="certified upper")
    ax.step(seconds, [s[0] for s in trace], where="post", label="certified lower (attained)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("local Lipschitz constant, l-inf -> l-inf")
    ax.set_title(f"bab on 16-{width}-{width}-10, l-inf ball radius 0.1 ({r['status']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"\nbounds against time: {args.plot} ({r['nodes']} nodes, [{r['lower']:.6g}, {r['upper']:.6g}])")


def global_section(args):
    print("\n## ExLipBaB networks, global (all of R^n), l2 -> l2\n")
    print("| network | value | published | engine to exact (s) | nodes | engine to 1% (s) | ExLipBaB (s) | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (peer_time, published) in EXLIPBAB.items():
        net = load_lipbab(args.shared / "exlipbab", name)
        repeat = 1 if peer_time is None or peer_time > 10 else 3
        t_exact, r = global_engine(net, 2.0, 1e-9, args.time_limit, repeat)
        t_gap, g = global_engine(net, 2.0, 1e-2, args.time_limit, repeat)
        value = f"{r['upper']:.12g}" if r["exact"] else f"[{r['lower']:.6g}, {r['upper']:.6g}] ({r['status']})"
        gap = f"{t_gap:.3f}" if g["exact"] else f"- ({g['status']})"
        speed = f"{peer_time / t_exact:.1f}x" if peer_time and r["exact"] else ""
        print(f"| {name} | {value} | {published or ''} | {t_exact:.3f} | {r['nodes']} | {gap} | {peer_time or ''} "
              f"| {speed} |", flush=True)


if __name__ == "__main__":
    main()
