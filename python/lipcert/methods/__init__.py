"""Bound methods. Each upper-bound method maps (network, p_in, p_out) to (upper, certified, stats)."""
