"""Experiment 1: plain vs AOL vs CLIP-regularised MLPs and CNNs on scikit-learn's 8x8 digits, certified
with lipcert.

    pip install 'lipcert[torch]' scikit-learn matplotlib
    python examples/train_lipschitz_digits.py --out digits_results   # a Markdown table and a PNG

For each model: clean accuracy, certified accuracy at several l2 radii (lc.certify with per-pair bounds:
method auto for the MLPs, autolip for the CNNs, whose per-pair sdp takes seconds 45 times over),
the global Lipschitz bounds of naive, autolip and sdp, and bab's local bounds on small l_inf balls
around test points. AOL models are trained with the offset
cross-entropy, with MaxMin (as in the paper) and with ReLU. Runs in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lipcert as lc
from lipcert.torch import AOLConv2d, AOLLinear, CLIPRegularizer, MaxMin, OffsetCrossEntropy
from plotting import pyplot, save_figure, write_table

RADII = [0.1, 0.25, 0.5, 1.0]
GLOBAL_METHODS = ("naive", "autolip", "sdp")
LOCAL_RADIUS = 0.05  # l_inf balls (pixels in [0, 1]) for bab's local constants
LOCAL_POINTS = 3


def data(seed: int):
    """Digits scaled to [0, 1], flat (n, 64), split 70/30."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return train_test_split(x, digits.target, test_size=0.3, random_state=seed, stratify=digits.target)


def mlp(kind: str, activation=torch.nn.ReLU, seed: int = 0):
    torch.manual_seed(seed)  # the initial weights
    linear = AOLLinear if kind == "aol" else torch.nn.Linear
    return torch.nn.Sequential(linear(64, 64), activation(), linear(64, 64), activation(), linear(64, 10))


def cnn(kind: str, activation=torch.nn.ReLU, seed: int = 0):
    torch.manual_seed(seed)
    conv = (lambda i, o: AOLConv2d(i, o, 3, padding=1)) if kind == "aol" else (lambda i, o: torch.nn.Conv2d(i, o, 3, padding=1))
    linear = AOLLinear if kind == "aol" else torch.nn.Linear
    return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), conv(1, 4), activation(), conv(4, 4), activation(),
                               torch.nn.AvgPool2d(2), torch.nn.Flatten(), linear(4 * 4 * 4, 10))


def train(model, x, y, loss_fn, epochs: int, regulariser=None, seed: int = 0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        for batch in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            if regulariser is not None:
                loss = loss + regulariser(xt[batch])
            loss.backward()
            opt.step()
    return model.eval()


def export(model, shape) -> lc.Network:
    """The lipcert network of a trained model (the leading Unflatten of the CNNs becomes the input shape)."""
    layers = list(model.double())
    if isinstance(layers[0], torch.nn.Unflatten):
        return lc.from_torch(torch.nn.Sequential(*layers[1:]), (1, 8, 8))
    return lc.from_torch(model, shape)


def evaluate(name, model, x_test, y_test, bab_time: float = 2.0) -> dict:
    net = export(model, (64,))
    # Per-pair sdp takes seconds on the unrolled CNNs, 45 times: autolip certifies those.
    certify_method = "auto" if len(net.input_shape) == 1 else "autolip"
    images = x_test.astype(np.float64).reshape((-1,) + net.input_shape)
    row = {"model": name}
    for method in GLOBAL_METHODS:
        b = lc.lipschitz(net, method=method)
        row[method] = (b.upper, b.time_s)
    if net.piecewise_linear:
        local = [lc.lipschitz(net, method="bab", norm=2, domain=lc.Ball(images[k], LOCAL_RADIUS, math.inf),
                              time_limit=bab_time) for k in range(LOCAL_POINTS)]
        row["bab"] = (float(np.mean([b.upper for b in local])), float(np.mean([b.lower for b in local])),
                      sum(b.exact for b in local))
    result = lc.certify(net, images, y_test, eps=RADII[0], method=certify_method)
    row["certify_method"] = certify_method
    row["clean"] = result.clean_accuracy
    row["certified"] = {r: result.certified_accuracy_at(r) for r in RADII}
    row["radii"] = result.radii
    return row


def models(epochs: int, x_train, y_train, seed: int, families=("MLP", "CNN")):
    ce, offset = torch.nn.CrossEntropyLoss(), OffsetCrossEntropy()
    for family, build in (("MLP", mlp), ("CNN", cnn)):
        if family not in families:
            continue
        yield f"plain {family}", train(build("plain", seed=seed), x_train, y_train, ce, epochs, seed=seed)
        yield f"AOL {family} (MaxMin)", train(build("aol", MaxMin, seed), x_train, y_train, offset, epochs, seed=seed)
        yield f"AOL {family} (ReLU)", train(build("aol", seed=seed), x_train, y_train, offset, epochs, seed=seed)
        clipped = build("plain", seed=seed)
        yield f"CLIP {family} (lam 0.05)", train(clipped, x_train, y_train, ce, epochs,
                                                 CLIPRegularizer(clipped, n_pairs=32, lam=0.05), seed=seed)


def table(rows) -> str:
    lines = ["| model | clean | " + " | ".join(f"cert. @{r}" for r in RADII) +
             " | certify's bounds | naive | autolip | sdp (s) | bab local: upper / lower (exact of 3) |",
             "|---|---|" + "---|" * len(RADII) + "---|---|---|---|---|"]
    for r in rows:
        bab = f"{r['bab'][0]:.4g} / {r['bab'][1]:.4g} ({r['bab'][2]})" if "bab" in r else "n/a"
        lines.append(f"| {r['model']} | {r['clean']:.3f} | " + " | ".join(f"{r['certified'][e]:.3f}" for e in RADII) +
                     f" | {r['certify_method']} | {r['naive'][0]:.4g} | {r['autolip'][0]:.4g} | {r['sdp'][0]:.4g} ({r['sdp'][1]:.2f}) | {bab} |")
    return "\n".join(lines)


def plot_certified_accuracy(rows, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    grid = np.linspace(0, 1.5, 61)
    families = [f for f in ("MLP", "CNN") if any(f in r["model"] for r in rows)]
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 3.5), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, family in zip(axes, families):
        for r in rows:
            if family in r["model"]:
                ax.plot(grid, [np.mean(r["radii"] > e) for e in grid], label=r["model"])
        ax.set_xlabel("l2 radius")
        ax.set_title(family)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("certified accuracy")
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bab-time", type=float, default=2.0, help="seconds of bab per local ball")
    p.add_argument("--families", default="MLP,CNN", help="comma-separated: MLP, CNN")
    p.add_argument("--out", type=Path, default=Path("digits_results"))
    args = p.parse_args(argv)
    x_train, x_test, y_train, y_test = data(args.seed)
    rows = []
    for name, model in models(args.epochs, x_train, y_train, args.seed, args.families.split(",")):
        start = time.perf_counter()
        rows.append(evaluate(name, model, x_test, y_test, bab_time=args.bab_time))
        print(f"{name}: evaluated in {time.perf_counter() - start:.1f} s", flush=True)
    write_table(table(rows), args.out / "digits.md")
    plot_certified_accuracy(rows, args.out / "digits_certified_accuracy.png")


if __name__ == "__main__":
    main()
