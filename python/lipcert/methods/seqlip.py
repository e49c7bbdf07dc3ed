"""`seqlip` (Scaman & Virmaux 2018): couples each pair of consecutive layers through the activation
between them, on the network split at its activations (slope_restricted.py).

The core splits each weight by its SVD and, per hidden layer, maximises the coupled spectral norm over
the activation's slopes by branch and bound over the neurons: the reported bound is the product of the
certified per-pair bounds (SVD residuals included), certified whether or not each pair's search closed.
SeqLip's own number, the product of the best vertices found (greedy where a search did not close), is
kept as stats["l2_estimate"]: it is neither a proved upper nor a lower bound.
"""
from __future__ import annotations

from .. import _core
from ..network import Network
from .slope_restricted import l2_to_norm, slope_restricted_problem

DEFAULT_TIME_LIMIT = 10.0
MAX_NODES_PER_PAIR = 200_000


def seqlip_bound(net: Network, p_in: float, p_out: float, time_limit: float | None = None, tol: float = 1e-6):
    """(upper, certified, stats): upper is certified; stats["pairs"] has each pair's bound and search."""
    problem = slope_restricted_problem(net)
    stats = {"neurons": problem.neurons}
    if not problem.alpha:  # a linear network: the norm of its one matrix
        l2 = problem.linear_l2_bound()
        stats.update(l2_bound=l2, l2_estimate=l2, pairs=[])
        return l2_to_norm(l2, net, p_in, p_out, stats), True, stats
    result = _core.seqlip_bound(*problem.core_args(), tol=tol,
                                time_limit=DEFAULT_TIME_LIMIT if time_limit is None else time_limit,
                                max_nodes_per_pair=MAX_NODES_PER_PAIR)
    l2 = result["certified_upper"]
    stats.update(l2_bound=l2, l2_estimate=result["estimate"], split_error=result["split_error"], pairs=result["pairs"],
                 pairs_solved=all(pair["solved"] for pair in result["pairs"]))
    return l2_to_norm(l2, net, p_in, p_out, stats), True, stats
