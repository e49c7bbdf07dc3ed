"""GPU vs CPU: batched subdomain bounding, branch and bound, batched power and Gram iteration.

    OMP_NUM_THREADS=2 python benchmarks/bench_gpu_bounds.py [--batch 4096] [--out results.md]

Run with OMP_NUM_THREADS=2 so the CPU baseline is the 2-core machine CI and users run on; both paths
run in this one process on the same random subdomains (small boxes, up to 40 neurons fixed in layer
order, as in branch and bound), and the table reports subdomains per second
and the GPU/CPU ratio (plus the largest relative difference of the two norm bounds, which should be
rounding-level). Needs a CUDA device; torch (if installed with CUDA) is the reference for the
power-iteration row.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import lipcert as lc  # noqa: E402
from lipcert import _core  # noqa: E402
from lipcert._cuda_loader import cuda_module  # noqa: E402
from lipcert.methods.autolip import autolip_bound  # noqa: E402
from conftest import random_mlp  # noqa: E402
from test_cuda import random_subdomains  # noqa: E402

NETWORKS = {  # name: layer sizes (ReLU between)
    "SDnet-like 10-30-30-30-3": [10, 30, 30, 30, 3],
    "Shi et al. 16-64-64-10": [16, 64, 64, 10],
    "16-256-256-10": [16, 256, 256, 10],
    "64-512-512-512-10": [64, 512, 512, 512, 10],
}


def best_time(fn, repeat):
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def bounding_rows(batch, repeat):
    rows = []
    for name, sizes in NETWORKS.items():
        rng = np.random.default_rng(0)
        net = random_mlp(rng, sizes)
        lowers, uppers, states = random_subdomains(rng, net, batch, width=0.05, depth=40)
        bounder = cuda_module().GpuSubdomainBounder(net._core)
        for p in (math.inf, 2.0):
            n_cpu = max(64, batch // 16) if sizes[0] >= 64 else batch  # keep the CPU side to seconds
            cpu_s, cpu = _core.time_bound_subdomains(net._core, lowers[:n_cpu], uppers[:n_cpu], states[:n_cpu], p, p,
                                                     None, repeat)
            _core.time_bound_subdomains(net._core, lowers[:64], uppers[:64], states[:64], p, p, bounder, 1)
            gpu_s, gpu = _core.time_bound_subdomains(net._core, lowers, uppers, states, p, p, bounder, repeat)
            split = bounder.last_timing()  # of the last repeat
            cpu, gpu = np.asarray(cpu), np.asarray(gpu[:n_cpu])
            assert np.array_equal(np.isnan(cpu), np.isnan(gpu)), "feasibility differs between CPU and GPU"
            feasible = ~np.isnan(cpu)
            diff = float(np.max(np.abs(gpu[feasible] - cpu[feasible]) / cpu[feasible])) if feasible.any() else 0.0
            cpu_rate, gpu_rate = n_cpu / cpu_s, batch / gpu_s
            rows.append((name, "inf" if p == math.inf else "2", f"{cpu_rate:,.0f}", f"{gpu_rate:,.0f}",
                         f"{gpu_rate / cpu_rate:.1f}", f"{diff:.1e}",
                         " / ".join(f"{1e3 * split[k]:.1f}" for k in ("pack_s", "device_s", "assemble_s"))))
    return rows


def bab_rows(repeat, time_limit=30.0):
    rows = []
    for sizes, p in (([10, 30, 30, 30, 3], 2.0), ([16, 32, 32, 10], math.inf), ([8, 128, 128, 2], 2.0)):
        rng = np.random.default_rng(1)
        net = random_mlp(rng, sizes)
        lo, hi = -0.1 * np.ones(sizes[0]), 0.1 * np.ones(sizes[0])
        out = {}
        for device in ("cpu", "cuda"):
            bounder = cuda_module().GpuSubdomainBounder(net._core) if device == "cuda" else None

            def run():
                return _core.lipschitz_bab(net._core, lo, hi, p, p, 1e-6, time_limit, 10_000_000, 0.0,
                                           np.zeros(sizes[0]), None, bounder)
            out[device] = best_time(run, repeat)

        def cell(seconds, r):
            gap = (r["upper"] - r["lower"]) / r["upper"]
            return f"{seconds:.3f} ({r['nodes']} nodes, {r['status']}, gap {gap:.0e})"
        (cpu_s, cpu), (gpu_s, gpu) = out["cpu"], out["cuda"]
        rows.append(("-".join(map(str, sizes)), "inf" if p == math.inf else "2", cell(cpu_s, cpu), cell(gpu_s, gpu),
                     f"{cpu_s / gpu_s:.2f}"))
    return rows


def power_rows(repeat):
    rng = np.random.default_rng(2)
    rows = []
    for count, n in ((64, 256), (16, 1024), (4, 2048)):
        mats = [rng.normal(size=(n, n)) for _ in range(count)]
        ours_s, ours = best_time(lambda: cuda_module().batched_power_iteration(mats, 100, 0), repeat)
        cpu_s, _ = best_time(lambda: [np.linalg.svd(a, compute_uv=False)[0] for a in mats], 1)
        torch_s = float("nan")
        try:
            import torch

            if torch.cuda.is_available():
                stacked = torch.tensor(np.stack(mats), device="cuda")
                torch.linalg.matrix_norm(stacked, ord=2)
                torch.cuda.synchronize()

                def reference():
                    r = torch.linalg.matrix_norm(torch.tensor(np.stack(mats), device="cuda"), ord=2)
                    return r.cpu().numpy()
                torch_s, exact = best_time(reference, repeat)
                assert np.all(np.asarray(ours) <= exact * (1 + 1e-12))
        except ImportError:
            pass
        rows.append((f"{count} x {n}x{n}", f"{ours_s:.4f}", f"{torch_s:.4f}", f"{cpu_s:.4f}"))
    return rows


def gram_rows(repeat):
    """Certified autolip on one network per row: the 2-core CPU proof (Lanczos estimate + Cholesky, or
    the per-frequency proof for large convolutions) vs Gram iteration on the GPU, same process."""
    rng = np.random.default_rng(3)
    nets = {
        "dense 1024-1024-1024-10": random_mlp(rng, [1024, 1024, 1024, 10]),
        "dense 2048-4096-2048-10": random_mlp(rng, [2048, 4096, 2048, 10]),
        "conv 64->64 3x3 on 64x32x32": lc.Network(
            [lc.Conv2d(rng.normal(size=(64, 64, 3, 3)) / 24, None, padding=1), lc.ReLU(),
             lc.Conv2d(rng.normal(size=(64, 64, 3, 3)) / 24, None, padding=1)], (64, 32, 32)),
        "conv 128->256 3x3 on 128x16x16": lc.Network(
            [lc.Conv2d(rng.normal(size=(256, 128, 3, 3)) / 34, None, padding=1)], (128, 16, 16)),
    }
    rows = []
    for name, net in nets.items():
        autolip_bound(net, 2.0, 2.0, use_cuda=True)  # warm-up: context creation
        cpu_s, (cpu, _, _) = best_time(lambda: autolip_bound(net, 2.0, 2.0, use_cuda=False), 1)
        gpu_s, (gpu, _, stats) = best_time(lambda: autolip_bound(net, 2.0, 2.0, use_cuda=True), repeat)
        squarings = max(layer["iterations"] for layer in stats["layers"])
        rows.append((name, f"{cpu:.10g}", f"{gpu:.10g}", f"{gpu / cpu - 1:.1e}",
                     f"{cpu_s:.3f}", f"{gpu_s:.3f}", squarings, f"{cpu_s / gpu_s:.1f}"))
        print(rows[-1], flush=True)
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sections", default="bounding,bab,power,gram", help="comma-separated subset to run")
    args = parser.parse_args()
    if not lc.cuda_available():
        sys.exit("no CUDA device: this benchmark compares the GPU path with the CPU path")
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    sections = [
        (f"CPU threads (OMP_NUM_THREADS): {threads}; batch {args.batch} subdomains\n\n"
         "Subdomains bounded per second in C++ (GPU includes transfers and the host-side assembly):\n",
         lambda: table(["network", "p=q", "CPU /s", "GPU /s", "GPU/CPU", "max rel. diff of norm bound",
                        "GPU ms: pack / device / assemble"],
                       bounding_rows(args.batch, args.repeat))),
        ("\nBranch and bound to tol 1e-6 on a box of radius 0.1 (seconds, limit 30 s):\n",
         lambda: table(["network", "p=q", "CPU", "GPU", "CPU/GPU"], bab_rows(1))),
        ("\nBatched spectral-norm estimates (seconds; 100 power steps vs torch.linalg on the GPU vs numpy SVD):\n",
         lambda: table(["matrices", "lipcert power", "torch.linalg", "numpy SVD (CPU)"], power_rows(args.repeat))),
        ("\nCertified autolip, CPU (2 threads) vs GPU Gram iteration (seconds; bounds must agree closely):\n",
         lambda: table(["network", "CPU upper", "GPU upper", "GPU/CPU - 1", "CPU s", "GPU s", "squarings",
                        "CPU/GPU"], gram_rows(args.repeat))),
    ]
    chosen = args.sections.split(",")
    report = []
    for (title, make), name in zip(sections, ("bounding", "bab", "power", "gram")):
        if name not in chosen:
            continue
        report += [title, make()]
        print("\n".join(report[-2:]), flush=True)
        if args.out:
            args.out.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
