"""The `lipcert` command line: results on stdout, diagnostics on stderr, one-line errors."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import resources

from .api import lipschitz
from .certify import certify
from .errors import LipcertError
from .io import load
from .methods.sdp import sdp_worthwhile
from .norms import norm_label, parse_norm

DEMO_NETWORKS = (
    ("lipsdp_random_2-10-30-20-2.npz", "LipSDP random 2-10-30-20-2 (ReLU)"),
    ("demo_cnn_1x12x12.npz", "CNN conv4-conv8-pool-fc10 (random, LeakyReLU)"),
)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, like every other error."""

    def error(self, message):
        self.exit(2, f"lipcert: error: {message} (see {self.prog} --help)\n")


def _norm_arg(text: str):
    parts = text.split(",")
    try:
        return parse_norm(tuple(parts) if len(parts) == 2 else parts[0])
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="auto",
                   help="naive, autolip, seqlip, sdp, sdp-layer, bab (exact; global for small Dense networks) or auto "
                        "(default: auto; bab for local)")
    p.add_argument("--norm", default="2", type=_norm_arg, help="p or p_in,p_out with p in {1, 2, inf} (default 2)")
    p.add_argument("--tol", default=1e-3, type=float, help="relative gap at which a result counts as exact")
    p.add_argument("--time-limit", default=None, type=float, help="seconds")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _cmd_bound(args) -> int:
    net = load(args.model)
    bound = lipschitz(net, method=args.method, norm=args.norm, tol=args.tol, time_limit=args.time_limit,
                      device=args.device)
    if args.json:
        print(json.dumps(bound.to_dict()))
    else:
        print(bound)
    return 0


def _cmd_local(args) -> int:
    import math

    import numpy as np

    from .domain import Ball

    net = load(args.model)
    try:
        center = np.load(args.center, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read --center {args.center}: {e}") from None
    if center.size != net.input_size:
        raise ValueError(f"--center has {center.size} values, the network input has {net.input_size}")
    domain = Ball(center.reshape(-1), args.radius, p=math.inf if args.ball_norm == "inf" else 1)
    bound = lipschitz(net, method=args.method, norm=args.norm, domain=domain, tol=args.tol,
                      time_limit=args.time_limit, device=args.device, progress=sys.stderr.isatty() and not args.json)
    if args.json:
        print(json.dumps(bound.to_dict()))
    else:
        print(bound)
        print(f"exact: {'yes' if bound.exact else 'no'} (tol {args.tol:g}); status: {bound.stats.get('status', '-')}; "
              f"nodes: {bound.stats.get('nodes', '-')}")
    return 0


def _cmd_export(args) -> int:
    import os

    if os.path.splitext(args.output)[1].lower() != ".npz":
        raise ValueError(f"the output must be a .npz file (lipcert's network format), got {args.output!r}")
    net = load(args.model)
    net.save(args.output)
    print(f"wrote {args.output}: {net!r}" if not args.json else json.dumps({"output": args.output}))
    return 0


def _cmd_certify(args) -> int:
    import numpy as np

    net = load(args.model)
    try:
        with np.load(args.data) as data:
            x, y = data["X"], data["y"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"--data must be an .npz file with arrays X and y ({e})") from None
    result = certify(net, x, y, args.eps, norm=args.norm[0], method=args.method, device=args.device)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    kind = "certified" if result.certified else "NOT certified (margins or bounds are estimates)"
    print(f"clean accuracy      {result.clean_accuracy:.4f}")
    print(f"certified accuracy  {result.certified_accuracy:.4f} at eps = {args.eps:g} (l{norm_label(result.norm)}, {kind})")
    print(f"median radius       {float(np.median(result.radii)):.4g}")
    print(f"bounds              {result.method}; {result.stats['note']}")
    return 0


DEMO_SDP_SECONDS = 10.0  # sdp joins the demo on networks it solves in about this long


def _cmd_demo(args) -> int:
    rows = []
    for filename, title in DEMO_NETWORKS:
        with resources.as_file(resources.files("lipcert") / "data" / filename) as path:
            net = load(path)
        for method in ("naive", "autolip") + (("sdp",) if sdp_worthwhile(net, DEMO_SDP_SECONDS) else ()):
            b = lipschitz(net, method=method, norm=2)
            rows.append((title, method, b.lower, b.upper, b.certified, b.stats.get("time_s", b.time_s), b.time_s))
    if args.json:
        print(json.dumps([dict(zip(("network", "method", "lower", "upper", "certified", "upper_time_s", "total_time_s"),
                                   r)) for r in rows]))
        return 0
    header = f"{'network':<48} {'method':<8} {'lower':>10} {'upper':>10} {'cert.':>5} {'upper s':>8} {'total s':>8}"
    print(header)
    print("-" * len(header))
    for title, method, lo, up, cert, t_up, t_all in rows:
        print(f"{title:<48} {method:<8} {lo:>10.4f} {up:>10.4f} {'yes' if cert else 'no':>5} {t_up:>8.3f} {t_all:>8.3f}")
    print("\nlower: ||J(x)||_2 at a certified witness point; upper: certified bound (l2 -> l2).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lipcert", description="Certified Lipschitz constants of neural networks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("bound", help="global Lipschitz bounds of a model (.npz, .onnx, .mat)")
    p.add_argument("model")
    _add_common(p)
    p.set_defaults(run=_cmd_bound)
    p = sub.add_parser("local", help="exact local constant on an l-inf (or l1) ball by branch and bound")
    p.add_argument("model")
    p.add_argument("--center", required=True, help=".npy file with the ball's centre")
    p.add_argument("--radius", required=True, type=float)
    p.add_argument("--ball-norm", default="inf", choices=("inf", "1"), help="the ball's norm (default inf)")
    _add_common(p)
    p.set_defaults(run=_cmd_local, method="bab")
    p = sub.add_parser("certify", help="certified accuracy and per-sample robustness radii on a labelled data set")
    p.add_argument("model")
    p.add_argument("--data", required=True, help=".npz file with arrays X (n, *input_shape) and y (n,) labels")
    p.add_argument("--eps", required=True, type=float, help="radius at which accuracy is certified")
    p.add_argument("--method", default="auto", help="naive, autolip, seqlip, sdp, sdp-layer or auto (default)")
    p.add_argument("--norm", default="2", type=_norm_arg, help="input norm p in {1, 2, inf} (default 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=_cmd_certify)
    p = sub.add_parser("export", help="write any importable model in lipcert's network format (.npz), "
                                      "which the C++ library and lipcert-bench read")
    p.add_argument("model")
    p.add_argument("output", help="the .npz file to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_export)
    p = sub.add_parser("demo", help="bounds on the networks shipped with lipcert")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="lipcert: %(message)s")
    try:
        return args.run(args)
    except (LipcertError, ValueError, TypeError, FileNotFoundError, NotImplementedError, ImportError) as e:
        print(f"lipcert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lipcert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
