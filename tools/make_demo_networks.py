"""Writes the networks shipped in python/lipcert/data (run from the repository root).

- lipsdp_random_2-10-30-20-2.npz: the weights of LipSDP's random_weights.mat (arobey1/LipSDP,
  Fazlyab et al. 2019, MIT licence); ReLU, zero biases. Published: LipSDP-Neuron 36.482.
- demo_cnn_1x12x12.npz: a small CNN with seeded random weights, to exercise the convolution paths.
"""
import sys
from pathlib import Path

import numpy as np

import lipcert as lc

out = Path("python/lipcert/data")
shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")

lc.load(shared / "lipsdp" / "random_weights.mat").save(out / "lipsdp_random_2-10-30-20-2.npz")

rng = np.random.default_rng(20261122)
cnn = lc.Network([
    lc.Conv2d(rng.normal(size=(4, 1, 3, 3)) / 3, rng.normal(size=4) * 0.1, padding=1),
    lc.LeakyReLU(0.01),
    lc.Conv2d(rng.normal(size=(8, 4, 3, 3)) / 6, rng.normal(size=8) * 0.1, stride=2, padding=1),
    lc.LeakyReLU(0.01),
    lc.AvgPool2d(2),
    lc.Flatten(),
    lc.Dense(rng.normal(size=(10, 72)) / np.sqrt(72), np.zeros(10)),
], input_shape=(1, 12, 12))
cnn.save(out / "demo_cnn_1x12x12.npz")
print(cnn)
