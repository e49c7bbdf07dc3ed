"""Runs the branch-and-bound benchmark suites through the standalone binary and the Python API.

    OMP_NUM_THREADS=2 python benchmarks/run_suites.py [--shared ../shared/data] [--time-limit 60]
        [--out results/suites.md] [--device cpu|cuda]

Suites: LipBaB's four networks (box [0, side]^n, p -> p for p = 1, 2, inf; LipBaB's own p = 2 times
from shared/data/README.md as the peer column), LipMIP's random suites (l-inf ball radius 0.1,
margin c = [1, -1], l-inf -> l1) and Shi et al.'s 16-w-w-10 networks (w = 16, 32, 64, random weights,
l-inf ball radius 0.05, inf -> inf). Each problem is exported once in lipcert's network file and
run by `lipcert-bench` to an exact result (tol 1e-9) and to a 1% gap, and by
`lipcert.lipschitz(method="bab")` to tol 1e-9 (its time includes the lower-bound seeding). Writes a
Markdown table, a PNG of the times (matplotlib, `pip install matplotlib`) and a PNG of the certified
bounds against time for the slowest problem.
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
from bench_bab import LIPBAB, lipmip_suite, load_lipbab, random_relu_net  # noqa: E402


def problems(shared: Path):
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
        net = random_relu_net(rng, [16, w, w, 10], bias_scale=0.5)
        yield "Shi et al.", f"16-{w}-{w}-10", net, rng.normal(size=16) * 0.5, 0.05, math.inf, math.inf, None


def bench_binary() -> str:
    found = shutil.which("lipcert-bench", path=sysconfig.get_path("scripts")) or shutil.which("lipcert-bench")
    if not found:
        sys.exit("lipcert-bench not found: it is installed with the package (pip install .)")
    return found


def label(p):
    return "inf" if math.isinf(p) else str(int(p))


def run_binary(binary, model, center_file, radius, p, q, tol, time_limit, device):
    cmd = [binary, str(model), "--center", str(center_file), "--radius", repr(radius), "--norm",
           f"{label(p)},{label(q)}", "--tol", repr(tol), "--time-limit", repr(time_limit), "--device", device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("suites.md"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    binary = bench_binary()
    header = ("| suite | network | p -> q | value (binary) | binary to exact (s) | nodes | binary to 1% (s) "
              "| lipschitz() (s) | peer (s) | peer / binary |")
    lines = [f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'all')}, device {args.device}, "
             f"time limit {args.time_limit:g} s\n", header, "|" + "---|" * 10]
    print("\n".join(lines), flush=True)
    rows, slowest = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (suite, name, net, center, radius, p, q, peer) in enumerate(problems(args.shared)):
            model, center_file = Path(tmp) / f"net{i}.npz", Path(tmp) / f"center{i}.npy"
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")
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
