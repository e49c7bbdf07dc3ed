"""Plain vs AOL vs CLIP-regularised MLPs on scikit-learn's 8x8 digits, certified with lipcert.

    pip install 'lipcert[torch]' scikit-learn matplotlib
    python examples/train_lipschitz_digits.py --out digits_results   # a Markdown table and a PNG

For each model: clean accuracy, certified accuracy at several l2 radii (lc.certify, per-pair bounds),
and the Lipschitz bounds of every global lipcert method. Runs in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lipcert as lc
from lipcert.torch import AOLLinear, CLIPRegularizer, OffsetCrossEntropy

RADII = [0.1, 0.25, 0.5, 1.0]


def data(seed: int):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return train_test_split(x, digits.target, test_size=0.3, random_state=seed, stratify=digits.target)


def plain_model():
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))


def aol_model():
    return torch.nn.Sequential(AOLLinear(64, 64), torch.nn.ReLU(), AOLLinear(64, 64), torch.nn.ReLU(), AOLLinear(64, 10))


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


def evaluate(name, model, x_test, y_test) -> dict:
    net = lc.from_torch(model.double(), (64,))
    row = {"model": name}
    for method in ("naive", "autolip", "sdp"):
        start = time.perf_counter()
        b = lc.lipschitz(net, method=method, time_limit=0.5)
        row[method] = (b.upper, b.stats["time_s"] if "time_s" in b.stats else time.perf_counter() - start)
    result = lc.certify(net, x_test.astype(np.float64), y_test, eps=RADII[0], method="auto")
    row["clean"] = result.clean_accuracy
    row["certified"] = {r: result.certified_accuracy_at(r) for r in RADII}
    row["radii"] = result.radii
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("digits_results"))
    args = p.parse_args(argv)
    x_train, x_test, y_train, y_test = data(args.seed)
    ce = torch.nn.CrossEntropyLoss()
    rows = []
    plain = train(plain_model(), x_train, y_train, ce, args.epochs, seed=args.seed)
    rows.append(evaluate("plain", plain, x_test, y_test))
    aol = train(aol_model(), x_train, y_train, OffsetCrossEntropy(), args.epochs, seed=args.seed)
    rows.append(evaluate("AOL (offset CE)", aol, x_test, y_test))
    clip_net = plain_model()
    clip = train(clip_net, x_train, y_train, ce, args.epochs, CLIPRegularizer(clip_net, n_pairs=32, lam=0.05),
                 seed=args.seed)
    rows.append(evaluate("CLIP (lam 0.05)", clip, x_test, y_test))

    header = ("| model | clean | " + " | ".join(f"cert. @{r}" for r in RADII) +
              " | naive | autolip | sdp |\n|---|---|" + "---|" * len(RADII) + "---|---|---|")
    lines = [header]
    for r in rows:
        lines.append(f"| {r['model']} | {r['clean']:.3f} | " + " | ".join(f"{r['certified'][e]:.3f}" for e in RADII) +
                     f" | {r['naive'][0]:.4g} | {r['autolip'][0]:.4g} | {r['sdp'][0]:.4g} |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digits.md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        grid = np.linspace(0, 1.5, 61)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r in rows:
            ax.plot(grid, [np.mean(r["radii"] > e) for e in grid], label=r["model"])
        ax.set_xlabel("l2 radius")
        ax.set_ylabel("certified accuracy")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "digits_certified_accuracy.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot")


if __name__ == "__main__":
    main()
