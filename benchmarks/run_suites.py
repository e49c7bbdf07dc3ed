"""Runs the benchmark suites of issues 3, 4 and 5 through the standalone binary and the Python API.

    OMP_NUM_THREADS=2 python benchmarks/run_suites.py [--shared ../shared/data] [--time-limit 60]
        [--out results/suites.md] [--device cpu|cuda] [--suites bab,global,trained]

bab (issue 3): LipBaB's four networks (box [0, side]^n, p -> p for p = 1, 2, inf; LipBaB's own p = 2
times from shared/data/README.md as the peer column), LipMIP's random suites (l-inf ball radius 0.1,
margin c = [1, -1], l-inf -> l1) and Shi et al.'s 16-w-w-10 networks (w = 16, 32, 64, random weights,
l-inf ball radius 0.05, inf -> inf). Each problem is exported once in lipcert's network file and
run by `lipcert-bench` to an exact result (tol 1e-9) and to a 1% gap, and by
`lipcert.lipschitz(method="bab")` to tol 1e-9 (its time includes the lower-bound seeding).

global (issue 4): certified global l2 bounds of LipSDP's random network, GLipSDP's digits fnn2 (seed 0,
output class 7) and GLipSDP's MNIST MLPs of width 64, by `lipcert-bench --method sdp|sdp-layer|seqlip`
and by `lipcert.lipschitz` (autolip, sdp, seqlip), beside the published values and times.

trained (issue 5; needs torch and scikit-learn): the digits MLPs of examples/train_lipschitz_digits.py
(plain, AOL with MaxMin and with ReLU, CLIP), trained briefly, then bounded the same two ways, with the
exact local constant (bab, binary and API) on an l-inf ball around a test point for the ReLU models.

Writes one Markdown file with a table per suite, a PNG of the bab times (matplotlib, `pip install
matplotlib`) and a PNG of the certified bounds against time for the slowest bab problem.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lipcert as lc  # noqa: E402
from lipcert import _core  # noqa: E402
from bench_bab import LIPBAB, lipmip_suite, load_lipbab, random_net  # noqa: E402
from bench_sdp import GLIPSDP_W64  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def bab_problems(shared: Path):
    """(suite, name, network, centre, radius, p, q, peer seconds or None)."""
    lipbab_dir = shared / "lipbab"
    if lipbab_dir.is_dir():
        for name, (side, peer_time, _published) in LIPBAB.items():
            net = load_lipbab(lipbab_dir, name)
            center = np.full(net.input_size, side / 2)
            for p in (2.0, 1.0, math.inf):
                yield "LipBaB", name, net, center, side / 2, p, p, peer_time if p == 2.0 else None
    else:
        print(f"(LipBaB networks not found under {lipbab_dir}; skipping that suite)", file=sys.stderr)
    for sizes, net, center in lipmip_suite():
        yield "LipMIP", "-".join(map(str, sizes)), net, center, 0.1, math.inf, 1.0, None
    rng = np.random.default_rng(1)
    for w in (16, 32, 64):
        net = random_net(rng, [16, w, w, 10], bias_scale=0.5)
        yield "Shi et al.", f"16-{w}-{w}-10", net, rng.normal(size=16) * 0.5, 0.05, math.inf, math.inf, None


def bench_binary() -> str:
    found = shutil.which("lipcert-bench", path=sysconfig.get_path("scripts")) or shutil.which("lipcert-bench")
    if not found:
        sys.exit("lipcert-bench not found: it is installed with the package (pip install .)")
    return found


def label(p):
    return "inf" if math.isinf(p) else str(int(p))


def run_binary(binary, model, center_file, radius, p, q, tol, time_limit, device):
    return run_command([binary, str(model), "--center", str(center_file), "--radius", repr(radius), "--norm",
                        f"{label(p)},{label(q)}", "--tol", repr(tol), "--time-limit", repr(time_limit),
                        "--device", device])


def run_global_binary(binary, model, method, time_limit):
    return run_command([binary, str(model), "--method", method, "--time-limit", repr(time_limit)])


def run_command(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def global_problems(shared: Path):
    """(name, network, published LipSDP-Neuron value or None, peer seconds or None)."""
    random_weights = shared / "lipsdp" / "random_weights.mat"
    if random_weights.exists():
        yield "LipSDP random 2-10-30-20-2", lc.load(random_weights), 36.482, None
    fnn2 = shared / "glipsdp" / "digits" / "fnn2_seed0_weights.mat"
    if fnn2.exists():
        yield "GLipSDP digits fnn2 seed 0, class 7", lc.load(fnn2).with_output(np.eye(10)[7]), 5.1097, None
    for depth in (2, 4, 8):
        mnist = shared / "glipsdp" / "mnist" / f"mlp_L{depth + 1}_W64.onnx"
        if mnist.exists():
            yield f"GLipSDP MNIST W64 d={depth}", lc.load(mnist), None, GLIPSDP_W64[depth][1]


def timed_bound(net, **kwargs):
    t = time.perf_counter()
    b = lc.lipschitz(net, **kwargs)
    return b, time.perf_counter() - t


def global_suite(binary, args, tmp: Path) -> list[str]:
    """Issue 4: certified global l2 bounds, binary and API, beside the published values and times."""
    lines = ["| network | method | binary bound | binary (s) | lipschitz() bound | lipschitz() (s) | published "
             "LipSDP | peer (s) |", "|" + "---|" * 8]
    print("\n".join(lines), flush=True)
    for i, (name, net, published, peer) in enumerate(global_problems(args.shared)):
        model = tmp / f"global{i}.npz"
        net.save(model)
        for method in ("autolip", "sdp", "sdp-layer", "seqlip"):
            binary_cells = ["–", "–"]
            if method != "autolip":  # the binary runs the methods whose solvers live in the C++ core
                r = run_global_binary(binary, model, method, args.time_limit)
                binary_cells = [f"{r['upper']:.6g}", f"{r['time_s']:.3f}"]
            b, seconds = timed_bound(net, method=method, time_limit=args.time_limit)
            row = (name, method, *binary_cells, f"{b.upper:.6g}", f"{seconds:.3f}",
                   published if method == "sdp" and published else "", peer if method == "sdp" and peer else "")
            lines.append("| " + " | ".join(map(str, row)) + " |")
            print(lines[-1], flush=True)
    return lines


def trained_suite(binary, args, tmp: Path) -> list[str]:
    """Issue 5: trained plain, AOL and CLIP digits MLPs, bounded by the binary and the API."""
    try:
        sys.path.insert(0, str(EXAMPLES))
        from train_lipschitz_digits import data, export, models
    except ImportError as e:
        print(f"(trained suite skipped: {e}; pip install 'lipcert[torch]' scikit-learn)", file=sys.stderr)
        return []
    x_train, x_test, y_train, _ = data(0)
    center = x_test[0].astype(np.float64)
    center_file = tmp / "digit.npy"
    np.save(center_file, center)
    lines = ["| model | method | binary bound | binary (s) | lipschitz() bound | lipschitz() (s) |", "|" + "---|" * 6]
    print("\n".join(lines), flush=True)
    for i, (name, model) in enumerate(models(args.epochs, x_train, y_train, 0, families=("MLP",))):
        net = export(model, (64,))
        path = tmp / f"trained{i}.npz"
        net.save(path)
        # (label, lipschitz() method, binary method or None, extra lipschitz() arguments)
        runs = [("autolip", "autolip", None, {}), ("sdp", "sdp", "sdp", {}), ("seqlip", "seqlip", "seqlip", {})]
        if net.piecewise_linear:  # bab: exact local constant on an l-inf ball of radius 0.05
            runs.append(("bab (local)", "bab", "bab", {"domain": lc.Ball(center, 0.05), "tol": 1e-9}))
        for what, method, binary_method, extra in runs:
            binary_cells = ["–", "–"]
            if binary_method == "bab":
                r = run_binary(binary, path, center_file, 0.05, 2.0, 2.0, 1e-9, args.time_limit, args.device)
            elif binary_method:
                r = run_global_binary(binary, path, binary_method, args.time_limit)
            if binary_method:
                binary_cells = [f"{r['upper']:.6g}", f"{r['time_s']:.3f}"]
            b, seconds = timed_bound(net, method=method, time_limit=args.time_limit, **extra)
            lines.append("| " + " | ".join(map(str, (name, what, *binary_cells, f"{b.upper:.6g}",
                                                       f"{seconds:.3f}"))) + " |")
            print(lines[-1], flush=True)
    return lines


def bounds_over_time(net, center, radius, p, time_limit):
    """(seconds, lower, upper) reported by the engine's progress callback (every 10 ms) during one
    run, plus the final bounds."""
    trace = [(0.0, 0.0, math.inf)]

    def progress(lower, upper, seconds, nodes, open_nodes):
        trace.append((seconds, lower, upper))
        return True
    start = time.perf_counter()
    r = _core.lipschitz_bab(net._core, center - radius, center + radius, p, p, 1e-9, time_limit, 10_000_000, 0.0,
                            center, progress, None, progress_interval=0.01)
    trace.append((time.perf_counter() - start, r["lower"], r["upper"]))
    trace[0] = (0.0, 0.0, trace[1][2])  # the plot starts at the first reported upper bound
    return trace


def bab_suite(binary, args, tmp: Path):
    """Issue 3: exact local constants; returns the table's lines, the rows to plot and the slowest problem."""
    header = ("| suite | network | p -> q | value (binary) | binary to exact (s) | nodes | binary to 1% (s) "
              "| lipschitz() (s) | peer (s) | peer / binary |")
    lines = [header, "|" + "---|" * 10]
    print("\n".join(lines), flush=True)
    rows, slowest = [], None
    for i, (suite, name, net, center, radius, p, q, peer) in enumerate(bab_problems(args.shared)):
        model, center_file = tmp / f"net{i}.npz", tmp / f"center{i}.npy"
        net.save(model)
        np.save(center_file, center)
        exact = run_binary(binary, model, center_file, radius, p, q, 1e-9, args.time_limit, args.device)
        gap = run_binary(binary, model, center_file, radius, p, q, 1e-2, args.time_limit, args.device)
        t = time.perf_counter()
        api = lc.lipschitz(net, method="bab", norm=(p, q), domain=lc.Ball(center, radius), tol=1e-9,
                           time_limit=args.time_limit, device=args.device)
        api_s = time.perf_counter() - t
        assert api.lower <= exact["upper"] * (1 + 1e-12) and exact["lower"] <= api.upper * (1 + 1e-12), \
            f"{name}: the binary's and the API's certified intervals do not overlap"
        value = (f"{exact['upper']:.10g}" if exact["exact"]
                 else f"[{exact['lower']:.6g}, {exact['upper']:.6g}] ({exact['status']})")
        ratio = f"{peer / exact['time_s']:.0f}x" if peer else ""
        row = (suite, name, f"{label(p)} -> {label(q)}", value, f"{exact['time_s']:.3f}", exact["nodes"],
               f"{gap['time_s']:.3f}", f"{api_s:.3f}", peer or "", ratio)
        lines.append("| " + " | ".join(map(str, row)) + " |")
        print(lines[-1], flush=True)
        rows.append((f"{name} {label(p)}->{label(q)}", exact["time_s"], gap["time_s"], api_s))
        if p == q and (slowest is None or exact["time_s"] > slowest[0]):
            slowest = (exact["time_s"], name, net, center, radius, p)
    return lines, rows, slowest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("suites.md"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--suites", default="bab,global,trained", help="comma-separated subset of bab,global,trained")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the trained suite's models")
    args = parser.parse_args(argv)
    suites = args.suites.split(",")
    unknown = set(suites) - {"bab", "global", "trained"}
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))} (choose from bab, global, trained)")
    binary = bench_binary()
    lines = [f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'all')}, device {args.device}, "
             f"time limit {args.time_limit:g} s"]
    print(lines[0], flush=True)
    rows, slowest = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for suite, title in (("bab", "Exact local constants (issue 3)"), ("global", "Global l2 bounds (issue 4)"),
                             ("trained", "Trained Lipschitz networks (issue 5)")):
            if suite not in suites:
                continue
            lines += ["", f"## {title}", ""]
            print("\n".join(lines[-3:]), flush=True)
            if suite == "bab":
                table, rows, slowest = bab_suite(binary, args, Path(tmp))
            else:
                table = (global_suite if suite == "global" else trained_suite)(binary, args, Path(tmp))
            lines += table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")
    if rows:
        plot(rows, slowest, args)


def plot(rows, slowest, args):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.5))
    y = np.arange(len(rows))
    for k, (what, offset) in enumerate((("lipcert-bench, exact", -0.27), ("lipcert-bench, 1% gap", 0.0),
                                        ("lipschitz(), exact", 0.27))):
        ax.barh(y + offset, [r[1 + k] for r in rows], height=0.27, label=what)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.legend()
    fig.tight_layout()
    times_png = args.out.with_name(args.out.stem + "_times.png")
    fig.savefig(times_png, dpi=120)
    print(f"wrote {times_png}")
    if slowest is None:
        return
    _, name, net, center, radius, p = slowest
    trace = np.array(bounds_over_time(net, center, radius, p, args.time_limit))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(trace[:, 0], trace[:, 2], where="post", label="certified upper")
    ax.step(trace[:, 0], trace[:, 1], where="post", label="certified lower")
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"Lipschitz constant ({label(p)} -> {label(p)})")
    ax.set_title(f"bab on {name}")
    ax.legend()
    fig.tight_layout()
    bounds_png = args.out.with_name(args.out.stem + "_bounds.png")
    fig.savefig(bounds_png, dpi=120)
    print(f"wrote {bounds_png}")


if __name__ == "__main__":
    main()
