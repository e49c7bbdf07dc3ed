"""HiGHS linked into the C++ core (used for region feasibility)."""
import numpy as np
from scipy.optimize import linprog

from lipcert import _core


def test_highs_is_linked():
    assert _core.highs_version().count(".") == 2


def test_chebyshev_radius_of_known_polytopes():
    inf = np.full(2, np.inf)
    # unit box: inscribed radius 1/2 at the centre
    r, c = _core.chebyshev_radius(np.zeros((0, 2)), np.zeros(0), np.zeros(2), np.ones(2))
    assert abs(r - 0.5) < 1e-9 and np.allclose(c, 0.5)
    # triangle x >= 0, y >= 0, x + y <= 1: r = 1 / (2 + sqrt 2)
    r, _ = _core.chebyshev_radius(np.array([[1.0, 1.0]]), np.array([1.0]), np.zeros(2), inf)
    assert abs(r - 1 / (2 + np.sqrt(2))) < 1e-9
    # empty: x <= -1 inside the unit box
    r, _ = _core.chebyshev_radius(np.array([[1.0, 0.0]]), np.array([-1.0]), np.zeros(2), np.ones(2))
    assert r == -1.0


def test_chebyshev_radius_matches_scipy_on_random_polytopes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(size=(6, 3))
        b = rng.normal(size=6) + 1.0
        lo, hi = -np.ones(3), np.ones(3)
        r, _ = _core.chebyshev_radius(a, b, lo, hi)
        g = np.vstack([a, np.eye(3), -np.eye(3)])
        h = np.concatenate([b, hi, -lo])
        res = linprog(np.r_[np.zeros(3), -1.0], A_ub=np.c_[g, np.linalg.norm(g, axis=1)], b_ub=h,
                      bounds=[(None, None)] * 3 + [(0, None)], method="highs")
        if res.status == 2:
            assert r == -1.0
        else:
            assert abs(r - (-res.fun)) < 1e-7


def test_prove_infeasible_agrees_with_scipy_on_random_systems():
    # One to four rows: a single row is decided by its own certificate, more rows by HiGHS's ray
    # unless one row already suffices. A proof must never be claimed for a feasible system, and
    # systems empty with a clear margin must be proved.
    rng = np.random.default_rng(1)
    lo, hi = -np.ones(3), np.ones(3)
    proved = empty = 0
    for _ in range(300):
        m = int(rng.integers(1, 5))
        g = rng.normal(size=(m, 3))
        h = rng.normal(size=m) * 2 - 1.0
        claim = _core.prove_infeasible(g, h, np.zeros_like(g), np.zeros(m), lo, hi)
        # the largest slack s with G x + s <= h in the box: empty iff s < 0
        res = linprog(np.r_[np.zeros(3), -1.0], A_ub=np.c_[g, np.ones(m)], b_ub=h,
                      bounds=[(-1, 1)] * 3 + [(None, None)], method="highs")
        slack = -res.fun
        if slack >= 0:
            assert not claim
        elif slack < -1e-6:
            empty += 1
            assert claim
        proved += claim
    assert empty > 30 and proved >= empty
