"""SeqLip (`seqlip`) on the peers' networks, beside autolip (its baseline, run in the same process),
sdp and the published values.

Models: LipSDP's random_weights.mat (2-10-30-20-2) and mnist_weights.mat (784-50-10); GLipSDP's 8x8
digits models (output = class 7, as published; all seeds, means reported beside the published greedy
SeqLip and LipSDP means); GLipSDP's MNIST MLPs of width 64 (global, l2).

    python benchmarks/bench_seqlip.py [--time-limit 10] [--seeds 10] [--out seqlip.md]

Columns: certified upper bounds (autolip, seqlip, sdp), seqlip's estimate (the product of the best
vertices its pair searches found: SeqLip's own number, not a bound), how many pairs closed, times, and
seqlip / autolip.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import lipcert as lc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Published means over 10 seeds (data README): greedy SeqLip and LipSDP, output = class 7.
PUBLISHED_DIGITS = {"fnn2": (5.15, 5.27), "fnn3": (10.68, 8.55), "cnn2": (2.71, 4.94), "cnn3": (11.73, 10.78)}


def measure(name: str, net: lc.Network, time_limit: float, with_sdp: bool, output=None) -> dict:
    auto = lc.lipschitz(net, method="autolip", output=output)
    seq = lc.lipschitz(net, method="seqlip", output=output, time_limit=time_limit)
    row = {"model": name, "autolip": auto.upper, "autolip_s": auto.stats["time_s"], "seqlip": seq.upper,
           "seqlip_s": seq.stats["time_s"], "estimate": seq.stats["l2_estimate"], "lower": max(auto.lower, seq.lower),
           "pairs": seq.stats["pairs"]}
    if with_sdp:
        sdp = lc.lipschitz(net, method="sdp", output=output)
        row.update(sdp=sdp.upper, sdp_s=sdp.stats["time_s"])
    return row


def models(seeds: int):
    yield "lipsdp random 2-10-30-20-2", lc.load(DATA / "lipsdp" / "random_weights.mat"), None, True
    yield "lipsdp mnist 784-50-10", lc.load(DATA / "lipsdp" / "mnist_weights.mat"), None, True
    e7 = np.eye(10)[7][None]
    for arch in PUBLISHED_DIGITS:
        for seed in range(seeds):
            net = lc.load(DATA / "glipsdp" / "digits" / f"{arch}_seed{seed}_weights.mat")
            yield f"digits {arch} seed {seed}", net, e7, arch.startswith("fnn")
    for depth in (2, 4, 8):
        yield f"mnist mlp W64 d={depth}", lc.load(DATA / "glipsdp" / "mnist" / f"mlp_L{depth + 1}_W64.onnx"), None, True


def markdown(rows) -> str:
    lines = ["| model | autolip | seqlip | seqlip / autolip | seqlip estimate | sdp | lower | pairs closed "
             "(by pair LipSDP) | seqlip s | sdp s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        closed = sum(p["solved"] for p in r["pairs"])
        by_sdp = sum(p["by_lipsdp"] for p in r["pairs"])
        sdp = f"{r['sdp']:.4g}" if "sdp" in r else "–"
        sdp_s = f"{r['sdp_s']:.2f}" if "sdp" in r else "–"
        lines.append(f"| {r['model']} | {r['autolip']:.4g} | {r['seqlip']:.4g} | {r['seqlip'] / r['autolip']:.3f} | "
                     f"{r['estimate']:.4g} | {sdp} | {r['lower']:.4g} | {closed}/{len(r['pairs'])} ({by_sdp}) | "
                     f"{r['seqlip_s']:.2f} | {sdp_s} |")
    return "\n".join(lines)


def digits_means(rows) -> str:
    lines = ["| digits model | seqlip (certified) | seqlip estimate | published greedy SeqLip | sdp | published LipSDP |",
             "|---|---|---|---|---|---|"]
    for arch, (greedy, lipsdp) in PUBLISHED_DIGITS.items():
        mine = [r for r in rows if r["model"].startswith(f"digits {arch} ")]
        if not mine:
            continue
        sdp = f"{np.mean([r['sdp'] for r in mine]):.4g}" if "sdp" in mine[0] else "–"
        lines.append(f"| {arch} | {np.mean([r['seqlip'] for r in mine]):.4g} | "
                     f"{np.mean([r['estimate'] for r in mine]):.4g} | {greedy} | {sdp} | {lipsdp} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=10.0, help="seqlip's time limit per model (s)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for name, net, output, with_sdp in models(args.seeds):
        rows.append(measure(name, net, args.time_limit, with_sdp, output))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    text = markdown(rows) + "\n\n" + digits_means(rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
