"""Experiment 2: AOL's offset trade-off on scikit-learn's 8x8 digits. An AOL MLP (MaxMin activations)
is trained with the offset cross-entropy for a range of offsets; a larger offset asks for larger
margins, which buys certified accuracy at large radii with clean accuracy (the ablation of Prach &
Lampert, qualitatively). Certified with lc.certify (autolip per-pair bounds).

    pip install 'lipcert[torch]' scikit-learn matplotlib
    python examples/aol_offset_tradeoff.py --out offset_results   # a Markdown table and a PNG
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import lipcert as lc
from lipcert.torch import MaxMin, OffsetCrossEntropy
from plotting import pyplot, save_figure, write_table
from train_lipschitz_digits import RADII, data, export, mlp, train

OFFSETS = [0.0, 0.5, 1.0, 2.0, 2 * np.sqrt(2), 4.0, 8.0]


def run(offsets, epochs: int, seed: int):
    x_train, x_test, y_train, y_test = data(seed)
    rows = []
    for offset in offsets:
        model = train(mlp("aol", MaxMin, seed), x_train, y_train, OffsetCrossEntropy(offset=offset), epochs, seed=seed)
        net = export(model, (64,))
        result = lc.certify(net, x_test.astype(np.float64), y_test, eps=RADII[0], method="autolip")
        rows.append({"offset": float(offset), "clean": result.clean_accuracy, "median_radius": float(np.median(result.radii)),
                     "certified": {r: result.certified_accuracy_at(r) for r in RADII}})
    return rows


def table(rows) -> str:
    lines = ["| offset | clean | " + " | ".join(f"cert. @{r}" for r in RADII) + " | median radius |",
             "|---|---|" + "---|" * len(RADII) + "---|"]
    for r in rows:
        lines.append(f"| {r['offset']:.3g} | {r['clean']:.3f} | " +
                     " | ".join(f"{r['certified'][e]:.3f}" for e in RADII) + f" | {r['median_radius']:.3f} |")
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    offsets = [r["offset"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(offsets, [r["clean"] for r in rows], "k-o", label="clean")
    for radius in RADII:
        ax.plot(offsets, [r["certified"][radius] for r in rows], "-s", label=f"certified @ {radius}")
    ax.set_xlabel("loss offset")
    ax.set_ylabel("accuracy")
    ax.set_title("AOL MLP on digits: offset trade-off")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offsets", default=",".join(str(float(o)) for o in OFFSETS), help="comma-separated offsets")
    p.add_argument("--out", type=Path, default=Path("offset_results"))
    args = p.parse_args(argv)
    rows = run([float(o) for o in args.offsets.split(",")], args.epochs, args.seed)
    write_table(table(rows), args.out / "offset.md")
    plot(rows, args.out / "offset_tradeoff.png")


if __name__ == "__main__":
    main()
