"""naive and autolip on GLipSDP's 33 MNIST ONNX models (../shared/data/glipsdp/mnist).

    python benchmarks/bench_mnist_onnx.py [DATA_DIR]

Prints a Markdown table: certified upper bounds of both methods, the certified lower bound (witness
found by sampling and local ascent), and the time of each upper bound and of the whole call.
"""
import sys
import time
from pathlib import Path

import lipcert as lc
from lipcert.methods.autolip import autolip_bound
from lipcert.methods.naive import naive_bound

data = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "glipsdp" / "mnist")
print("| model | layers | naive | s | autolip | s | lower | lipschitz() s |")
print("|---|---|---|---|---|---|---|---|")
for path in sorted(data.glob("*.onnx"), key=lambda p: (p.name[:3], len(p.name), p.name)):
    net = lc.load(path)
    t = time.perf_counter()
    naive = naive_bound(net, 2.0, 2.0)[0]
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    auto = autolip_bound(net, 2.0, 2.0)[0]
    t_auto = time.perf_counter() - t
    b = lc.lipschitz(net, method="autolip", time_limit=30)
    n_affine = sum(l.is_affine for l in net.layers)
    print(f"| {path.stem} | {n_affine} | {naive:.4g} | {t_naive:.2f} | {auto:.4g} | {t_auto:.2f} | {b.lower:.4g} | {b.time_s:.2f} |",
          flush=True)
