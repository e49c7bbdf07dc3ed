"""lipcert: certified Lipschitz constants of neural networks.

    import lipcert as lc
    net = lc.Network([lc.Dense(W1, b1), lc.ReLU(), lc.Dense(W2, b2)], input_shape=(n,))
    b = lc.lipschitz(net, method="autolip", norm=2)
    b.upper, b.lower, b.certified, b.witness
"""
from ._cuda_loader import cuda_available, cuda_compiled
from .api import lipschitz, verify_certificate
from .bound import Bound
from .certify import Certification, certify
from .domain import Ball, Box
from .errors import InvalidNetworkError, LipcertError, UnsupportedLayerError
from .io import from_sklearn, from_torch, load
from .layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, MaxMin, ReLU, Sigmoid, Tanh
from .network import Network

__version__ = "0.1.0"

__all__ = [
    "Network", "Dense", "Conv2d", "AvgPool2d", "Flatten", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "MaxMin",
    "lipschitz", "verify_certificate", "Bound", "certify", "Certification", "Box", "Ball", "load", "from_torch", "from_sklearn", "cuda_available", "cuda_compiled",
    "LipcertError", "InvalidNetworkError", "UnsupportedLayerError",
]
