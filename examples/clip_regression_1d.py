"""Experiment 3: CLIP on 1-D regression. A ReLU MLP is fitted to noisy samples of a smooth function with
the CLIP regulariser at several strengths lam; for each fit, lipcert gives the exact Lipschitz constant
on the data interval (bab), a global certified bound (sdp), and CLIP's own running estimate (a lower
bound by construction) beside them.

    pip install 'lipcert[torch]' matplotlib
    python examples/clip_regression_1d.py --out clip_results   # a Markdown table and a PNG
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import lipcert as lc
from lipcert.torch import CLIPRegularizer
from plotting import pyplot, save_figure, write_table

LAMBDAS = [0.0, 0.01, 0.03, 0.1, 0.3]
INTERVAL = (-2.0, 2.0)


def data(n: int, seed: int):
    """n points of sin(2x) + 0.5 sin(7x) with Gaussian noise (sigma 0.2) on INTERVAL."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(*INTERVAL, size=n))
    y = np.sin(2 * x) + 0.5 * np.sin(7 * x) + 0.2 * rng.normal(size=n)
    return x[:, None].astype(np.float32), y[:, None].astype(np.float32)


def fit(x, y, lam: float, steps: int, seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 1))
    regulariser = CLIPRegularizer(model, n_pairs=16, lam=lam, ascent_steps=2, step_size=0.05, init_distance=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xt), yt)
        if lam > 0:
            loss = loss + regulariser(xt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(model(xt), yt))
    return model.eval(), mse, (regulariser.estimate() if lam > 0 else None)


def run(lambdas, steps: int, seed: int, bab_time: float):
    x, y = data(60, seed)
    rows = []
    for lam in lambdas:
        model, mse, estimate = fit(x, y, lam, steps, seed)
        net = lc.from_torch(model.double(), (1,))
        exact = lc.lipschitz(net, method="bab", domain=lc.Box([INTERVAL[0]], [INTERVAL[1]]), time_limit=bab_time)
        sdp = lc.lipschitz(net, method="sdp")
        rows.append({"lam": lam, "mse": mse, "clip": estimate, "bab": exact, "sdp": sdp, "net": net})
    return x, y, rows


def table(rows) -> str:
    lines = ["| lam | train MSE | CLIP estimate (lower) | bab on the interval: lower / upper (exact) | sdp global upper |",
             "|---|---|---|---|---|"]
    for r in rows:
        clip = "—" if r["clip"] is None else f"{r['clip']:.4g}"
        b = r["bab"]
        lines.append(f"| {r['lam']:g} | {r['mse']:.4f} | {clip} | {b.lower:.6g} / {b.upper:.6g} ({b.exact}) | "
                     f"{r['sdp'].upper:.4g} |")
    return "\n".join(lines)


def plot(x, y, rows, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    grid = np.linspace(*INTERVAL, 400)[:, None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.scatter(x[:, 0], y[:, 0], s=8, color="k", label="data")
    for r in rows:
        left.plot(grid[:, 0], r["net"](grid)[:, 0], label=f"lam {r['lam']:g} (L = {r['bab'].upper:.3g})")
    left.set_xlabel("x")
    left.legend(fontsize=7)
    left.set_title("CLIP fits")
    positions = np.arange(len(rows))
    right.plot(positions, [r["bab"].upper for r in rows], "o-", label="exact on the interval (bab)")
    right.plot(positions, [r["sdp"].upper for r in rows], "s--", label="global certified (sdp)")
    right.plot(positions, [np.nan if r["clip"] is None else r["clip"] for r in rows], "^:", label="CLIP estimate")
    right.set_xticks(positions, [f"{r['lam']:g}" for r in rows])
    right.set_xlabel("lam")
    right.set_ylabel("Lipschitz constant")
    right.set_yscale("log")
    right.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bab-time", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path("clip_results"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a 32-wide MLP on 60 points: threads only add overhead
    x, y, rows = run(LAMBDAS, args.steps, args.seed, args.bab_time)
    write_table(table(rows), args.out / "clip_1d.md")
    plot(x, y, rows, args.out / "clip_1d.png")


if __name__ == "__main__":
    main()
