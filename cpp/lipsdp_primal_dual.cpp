// Mehrotra's primal-dual method for LipSDP-Neuron on the chordal (block-tridiagonal) cone.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "lipsdp_chain_inverse.hpp"
#include "lipsdp_solver_parts.hpp"

namespace lipcert::lipsdp {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Mehrotra's primal-dual method for one LMI with a multiplier per neuron (LipSDP-Neuron's own
// problem). The barrier method (lipsdp_solver.cpp) needs 2.5-5x more Newton systems, most of them
// centring its path: 46 / 59 / 103 / 193 against this method's 13 / 15 / 25 / 38 on GLipSDP's MNIST
// W64 with 8 / 16 / 32 / 64 weights (Clarabel took 14-20 on random 3-20-layer MLPs where the barrier
// took 35-69). Each of its iterations costs 2-4x a barrier step, though: it pays from about 24 hidden
// layers (LipSdpOptions::primal_dual).
//
// The primal variable X only enters through its entries on M's block-tridiagonal pattern E (every A_j
// and C lie there), so X is held on E, kept completable (every 2-block clique definite), and used
// through its maximum-determinant completion Xh, whose inverse lies on E: the chordal primal-dual
// method of Fukuda, Kojima, Murota and Nakata (SDPA-C). Its Newton system over y = (rho, lambda) has
// the same shape as the barrier's: B_ij = tr(A_i Xh A_j M^-1) (the HKM direction). Its directions
// only need products such as Xh dS M^-1 on E, which chains of block-tridiagonal inverses give in
// O(d w^3) for d layers of width w (lipsdp_chain_inverse.hpp); near the optimum, where those lose
// accuracy, dense products take over, O(d^2 w^3).
//
// The dual stays feasible throughout (M(y) definite, lambda > 0), so every point it passes can be
// proved by lipsdp_certified_bound. The primal may start infeasible; "optimal" also asks it to be
// feasible by then, so that status rests on a primal-dual pair and its gap.

// Matrices on E as blocks: X, its steps, and the second-order term.
using Banded = BlockTridiagonal;

// The blocks on E of (U + U') / 2 for a dense U, or, lower_only, for a symmetric U of which only the
// lower triangle and the diagonal blocks are stored (as lower_block_inverse leaves M^-1).
Banded symmetric_part_on_pattern(const Reduced& r, const MatrixXd& u, bool lower_only = false) {
  Banded b;
  b.diag.resize(r.l + 1);
  b.sub.resize(r.l + 1);
  for (int k = 0; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k);
    b.diag[k] = 0.5 * (u.block(o, o, n, n) + u.block(o, o, n, n).transpose());
    if (k > 0) {
      const int op = r.block_offset[k - 1], np = r.block_size(k - 1);
      if (lower_only) b.sub[k] = u.block(o, op, n, np);
      else b.sub[k] = 0.5 * (u.block(o, op, n, np) + u.block(op, o, np, n).transpose());
    }
  }
  return b;
}

// The blocks on E of (A B + (A B)') / 2 for dense A and B, A given by its row blocks (row_block(k)):
// one product of A's row block k with B's column blocks k-1..k+1 per block.
template <class RowBlock>
Banded symmetric_product_on_pattern(const Reduced& r, RowBlock row_block, const MatrixXd& b) {
  std::vector<MatrixXd> rows(r.l + 1);  // (A B)_{k, k-1..k+1}
  std::vector<int> first(r.l + 1);
#pragma omp parallel for schedule(dynamic)
  for (int k = 0; k <= r.l; ++k) {
    const int lo = std::max(k - 1, 0), hi = std::min(k + 1, r.l);
    first[k] = r.block_offset[lo];
    rows[k].noalias() = row_block(k) * b.middleCols(first[k], r.block_offset[hi + 1] - first[k]);
  }
  Banded out;
  out.diag.resize(r.l + 1);
  out.sub.resize(r.l + 1);
  for (int k = 0; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k);
    const auto own = rows[k].middleCols(o - first[k], n);
    out.diag[k] = 0.5 * (own + own.transpose());
    if (k > 0) {
      const int op = r.block_offset[k - 1], np = r.block_size(k - 1);
      out.sub[k] = 0.5 * (rows[k].middleCols(op - first[k], np) + rows[k - 1].middleCols(o - first[k - 1], n).transpose());
    }
  }
  return out;
}

// s a on E.
Banded scaled(Banded a, double s) {
  for (size_t k = 0; k < a.diag.size(); ++k) {
    a.diag[k] *= s;
    if (k > 0) a.sub[k] *= s;
  }
  return a;
}

// a + s b on E.
Banded plus(const Banded& a, double s, const Banded& b) {
  Banded c = a;
  for (size_t k = 0; k < c.diag.size(); ++k) {
    c.diag[k] += s * b.diag[k];
    if (k > 0) c.sub[k] += s * b.sub[k];
  }
  return c;
}

// tr(A B) for symmetric A, B on E.
double pattern_dot(const Banded& a, const Banded& b) {
  double sum = 0.0;
  for (size_t k = 0; k < a.diag.size(); ++k) {
    sum += a.diag[k].cwiseProduct(b.diag[k]).sum();
    if (k > 0) sum += 2 * a.sub[k].cwiseProduct(b.sub[k]).sum();
  }
  return sum;
}

// (tr(A_j X))_j for X on E: j = 0 is rho (A_0 = I on the input block), then the neurons.
VectorXd adjoint_map(const Reduced& r, const Banded& x) {
  VectorXd out(1 + r.n_multipliers);
  out(0) = x.diag[0].trace();
  for (int k = 1; k <= r.l; ++k) {
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    const MatrixXd& w = r.w[k - 1];
    const VectorXd cross = x.sub[k].cwiseProduct(w).rowwise().sum();
    VectorXd quad = VectorXd::Zero(w.rows());
    if (a != 0.0) quad = (w * x.diag[k - 1]).cwiseProduct(w).rowwise().sum();
    out.segment(1 + r.multiplier_offset[k], w.rows()) = x.diag[k].diagonal() - 2 * c * cross + a * quad;
  }
  return out;
}

// sum_j dy_j A_j: M's change along dy.
Banded lmi_change(const Reduced& r, const VectorXd& dy) {
  Banded m = lmi_at(r, dy);
  m.diag[r.l].noalias() += r.w[r.l].transpose() * r.w[r.l];
  return m;
}

// The strictly upper blocks of a lower-stored block matrix, mirrored from the lower ones.
void mirror_blocks(const Reduced& r, MatrixXd& x) {
  for (int k = 1; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k);
    x.block(0, o, o, n) = x.block(o, 0, n, o).transpose();
  }
}

// T = dS M^-1 with dS = sum_j dy_j A_j, from a dense (mirrored) M^-1 and its products M^-1 W (xw, as
// inverse_times_weights forms them): row block k is dLambda_k (M^-1)_k - c dLambda_k (W_{k-1} M^-1) +
// W_k' dLambda_{k+1} (a W_k M^-1 - c (M^-1)_{k+1}) (dLambda_0 = drho I), one product per block where
// the generic banded product took three (measured: 45 ms of a 0.45 s iteration on GLipSDP's MNIST W64
// with 32 weights).
void change_times_inverse(const Reduced& r, const VectorXd& dy, const MatrixXd& si, const MatrixXd& xw, MatrixXd& out) {
  out.resize(r.dimension, r.dimension);
  const auto& mo = r.multiplier_offset;
#pragma omp parallel for schedule(dynamic)
  for (int k = 0; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k);
    auto rows = out.middleRows(o, n);
    if (k == 0) {
      rows = dy(0) * si.middleRows(o, n);
    } else {
      const auto d = dy.segment(1 + mo[k], n);
      rows = d.asDiagonal() * (si.middleRows(o, n) - r.slopes[k - 1].c * xw.middleCols(mo[k], n).transpose());
    }
    if (k < r.l) {
      const int o1 = r.block_offset[k + 1], n1 = r.block_size(k + 1);
      const auto d1 = dy.segment(1 + mo[k + 1], n1);
      MatrixXd next = -r.slopes[k].c * si.middleRows(o1, n1);
      if (r.slopes[k].a != 0.0) next += r.slopes[k].a * xw.middleCols(mo[k + 1], n1).transpose();
      rows.noalias() += r.w[k].transpose() * (d1.asDiagonal() * next);
    }
  }
}

// b <- M^-1 b from M's backward elimination (with its maps F_k): c_l = b_l, c_k = b_k + F_{k+1}' c_{k+1},
// then x_0 = Sigma_0^-1 c_0, x_k = Sigma_k^-1 c_k + F_k x_{k-1}. Each thread sweeps its own panels of
// columns: by block, with the threads inside each small product, they spent much of the sweep waiting.
void solve_in_place(const Reduced& r, const Elimination& e, MatrixXd& b) {
  constexpr Eigen::Index kPanel = 256;
  const Eigen::Index panels = (b.cols() + kPanel - 1) / kPanel;
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index p = 0; p < panels; ++p) {
    auto panel = b.middleCols(p * kPanel, std::min(kPanel, b.cols() - p * kPanel));
    auto rows = [&](int k) { return panel.middleRows(r.block_offset[k], r.block_size(k)); };
    for (int k = r.l - 1; k >= 0; --k) rows(k).noalias() += e.f[k + 1].transpose() * rows(k + 1);
    for (int k = 0; k <= r.l; ++k) {
      auto c = rows(k);
      const auto l = e.sigma[k].factor().triangularView<Eigen::Lower>();
      l.solveInPlace(c);
      l.transpose().solveInPlace(c);
      if (k > 0) c.noalias() += e.f[k] * rows(k - 1);
    }
  }
}

// The clique of blocks k-1 and k of a matrix on E, as one dense matrix.
MatrixXd clique(const Reduced& r, const Banded& x, int k) {
  const int np = r.block_size(k - 1), n = r.block_size(k);
  MatrixXd c(np + n, np + n);
  c.topLeftCorner(np, np) = x.diag[k - 1];
  c.bottomLeftCorner(n, np) = x.sub[k];
  c.topRightCorner(np, n) = x.sub[k].transpose();
  c.bottomRightCorner(n, n) = x.diag[k];
  return c;
}

// Xh^-1 for X on E (Xh its maximum-determinant completion): the sum over the cliques (blocks k-1, k)
// of their inverses, less the separators' (blocks 1..l-1). False if a clique is not definite (X is
// then not completable).
bool completion_inverse(const Reduced& r, const Banded& x, Banded& out) {
  std::vector<MatrixXd> inverses(r.l + 1), separators(r.l + 1);
  int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : failed)
  for (int k = 1; k <= r.l; ++k) {
    const Eigen::LLT<MatrixXd> llt(clique(r, x, k));
    if (llt.info() != Eigen::Success) {
      ++failed;
      continue;
    }
    inverses[k] = llt.solve(MatrixXd::Identity(llt.rows(), llt.rows()));
    if (k < r.l) {
      const Eigen::LLT<MatrixXd> separator(x.diag[k]);
      if (separator.info() != Eigen::Success) ++failed;
      else separators[k] = separator.solve(MatrixXd::Identity(x.diag[k].rows(), x.diag[k].rows()));
    }
  }
  if (failed > 0) return false;
  out.diag.resize(r.l + 1);
  out.sub.resize(r.l + 1);
  for (int k = 0; k <= r.l; ++k) out.diag[k] = MatrixXd::Zero(r.block_size(k), r.block_size(k));
  for (int k = 1; k <= r.l; ++k) {
    const int np = r.block_size(k - 1), n = r.block_size(k);
    out.diag[k - 1] += inverses[k].topLeftCorner(np, np);
    out.sub[k] = inverses[k].bottomLeftCorner(n, np);
    out.diag[k] += inverses[k].bottomRightCorner(n, n);
    if (k < r.l) out.diag[k] -= separators[k];
  }
  return true;
}

// Where the largest a with feasible(a) lies, feasible(0) holding: feasible(lo), and not feasible(hi)
// unless lo = hi = cap.
struct StepBracket {
  double lo, hi;
};
// By halving from cap (finite).
template <class Feasible>
StepBracket bracket_step(Feasible feasible, double cap) {
  if (feasible(cap)) return {cap, cap};
  double hi = cap, lo = cap;
  do {
    hi = lo;
    lo *= 0.5;
  } while (lo > 1e-14 * cap && !feasible(lo));
  if (lo <= 1e-14 * cap) return {0.0, hi};
  return {lo, hi};
}
// Nearly the largest feasible a in the bracket: its feasible end after `refinements` bisection steps
// (4: within 7% of the step).
template <class Feasible>
double refined_step(Feasible feasible, StepBracket b, int refinements) {
  if (b.lo == b.hi || b.lo == 0.0) return b.lo;
  for (int i = 0; i < refinements; ++i) {
    const double mid = 0.5 * (b.lo + b.hi);
    (feasible(mid) ? b.lo : b.hi) = mid;
  }
  return b.lo;
}

// Nearly the largest a <= cap with every clique of X + a dX definite, X's cliques definite, by bisection
// on the cliques' Cholesky factorisations (to 0.4%), refining only the cliques whose bracket can hold
// the least step. The exact step, from the cliques' generalized eigenvalues, took 0.76 ms per 120 x 120
// clique against 0.04 ms per factorisation, and 42% of an iteration on the ECLipsE grid's 5 x 60.
// Measured over 18 ECLipsE-grid and MNIST W64 nets (2-50 layers): 350 iterations with the exact step,
// 351 with 8 bisection steps, 364 with 4 (7%); a closer dual step (lmi_step with 6 or 8) took 352 and
// 358.
constexpr int kCliqueRefinements = 8;
double clique_step(const Reduced& r, const Banded& x, const Banded& dx, double cap) {
  auto definite_at = [&](int k) {
    return [xc = clique(r, x, k), dxc = clique(r, dx, k)](double a) {
      return Eigen::LLT<MatrixXd>(xc + a * dxc).info() == Eigen::Success;
    };
  };
  std::vector<StepBracket> brackets(r.l + 1, {cap, cap});
#pragma omp parallel for schedule(dynamic)
  for (int k = 1; k <= r.l; ++k) brackets[k] = bracket_step(definite_at(k), cap);
  double least_hi = cap;
  for (const StepBracket& b : brackets) least_hi = std::min(least_hi, b.hi);
  std::vector<double> steps(r.l + 1, cap);
#pragma omp parallel for schedule(dynamic)
  for (int k = 1; k <= r.l; ++k)
    steps[k] = brackets[k].lo < least_hi ? refined_step(definite_at(k), brackets[k], kCliqueRefinements) : brackets[k].lo;
  return *std::min_element(steps.begin(), steps.end());
}

// The largest a with v + a dv > 0 (+inf if dv >= 0).
double ratio_step(const VectorXd& v, const VectorXd& dv) {
  double step = kInf;
  for (Eigen::Index i = 0; i < v.size(); ++i)
    if (dv(i) < 0) step = std::min(step, -v(i) / dv(i));
  return step;
}

// Nearly the largest a <= cap with M + a dM definite (M is definite). M(y + a dy) is M(y) + a dM(dy):
// assembled from them rather than from y + a dy, the trials skip the products W'TW that LeakyReLU
// layers add to M (measured: the bisection took 1.56 s instead of 3.39 s over a solve of GLipSDP's
// MNIST W64 with 64 weights).
double lmi_step(const Banded& m, const Banded& dm, double cap) {
  auto definite = [&](double a) { return eliminate(plus(m, a, dm), EliminationOutput::LogDet).ok; };
  return refined_step(definite, bracket_step(definite, cap), 4);
}

// B_ij = tr(A_i Xh A_j M^-1), the HKM direction's Newton system (lower triangle): with
// P_ij = G_i' Xh G_j and Q_ij = G_i' M^-1 G_j (as in Barrier::add_part), tr(S_i P_ij S_j Q_ij').
void hkm_matrix(const Reduced& r, const MatrixXd& xh, const MatrixXd& si, MatrixXd& b) {
  const int big_n = r.n_multipliers, n0 = r.block_size(0);
  b.resize(1 + big_n, 1 + big_n);
  const auto& mo = r.multiplier_offset;
  auto h = b.block(1, 1, big_n, big_n);
  const auto pe = xh.bottomLeftCorner(big_n, n0), qe = si.bottomLeftCorner(big_n, n0);
  struct Pair {
    NeuronPairBlocks p, q;
  };
  NeuronPairBlocks::for_each_row(r, [&] { return Pair{{r, xh}, {r, si}}; }, [&](Pair& pair, int k) {
    NeuronPairBlocks &p = pair.p, &q = pair.q;
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    p.row(k);
    q.row(k);
    for (int kk = k; kk >= 1; --kk) {
      const double c2 = r.slopes[kk - 1].c, a2 = r.slopes[kk - 1].a;
      p.column(kk);
      q.column(kk);
      // L = S_i P, then T = L S_j.
      const Eigen::ArrayXXd l_ee = p.ee.array() - c * p.we.array(), l_ew = p.ew.array() - c * p.ww.array(),
                            l_we = a * p.we.array() - c * p.ee.array(), l_ww = a * p.ww.array() - c * p.ew.array();
      h.block(mo[k], mo[kk], mo[k + 1] - mo[k], mo[kk + 1] - mo[kk]) =
          ((l_ee - c2 * l_ew) * q.ee.array() + (a2 * l_ew - c2 * l_ee) * q.ew.array() +
           (l_we - c2 * l_ww) * q.we.array() + (a2 * l_ww - c2 * l_we) * q.ww.array())
              .matrix();
    }
    const auto pw = p.weighted_input(), qw = q.weighted_input();
    for (int i = mo[k]; i < mo[k + 1]; ++i) {
      const int j = i - mo[k];
      b(1 + i, 0) = pe.row(i).dot(qe.row(i)) - c * (pw.row(j).dot(qe.row(i)) + pe.row(i).dot(qw.row(j))) +
                    a * pw.row(j).dot(qw.row(j));
    }
  });
  b(0, 0) = xh.topLeftCorner(n0, n0).cwiseProduct(si.topLeftCorner(n0, n0)).sum();
}

// The fraction of the way to the boundary each step takes: 0.9, up to 0.99 as the predictor's own
// steps approach 1 (SDPT3's rule). Measured: a fixed 0.9 took 13 / 17 / 23 iterations on random 3 / 10 /
// 20-layer MLPs where 0.98 took 13 / 23 / 39 (prototype); this rule took 8% fewer than 0.9, 226 against
// 246 over 13 MLPs (ECLipsE-style 3-20 x 20-40 with ReLU and LeakyReLU, GLipSDP's MNIST W16-W64), never
// more on any; a fixed 0.95, 229.
double step_to_boundary(double predictor_primal, double predictor_dual) {
  return 0.9 + 0.09 * std::min(predictor_primal, predictor_dual);
}
// The chains' products lose accuracy as M and Xh^-1 approach singularity (measured: their error grew
// about as cond(M)^2, the dense products' as cond(M)); past this residual the dense products take over.
constexpr double kChainResidual = 1e-8;
// The primal constraints tr(A_0 X) = 1, tr(A_j X) + z_j = 0 hold to this at an optimal end (measured:
// 1e-12 to 3e-9 where the gap met tol, on ECLipsE-style, random and GLipSDP's MNIST MLPs).
constexpr double kPrimalResidual = 1e-6;
// Over twice the most any measured network took (38); past it the barrier method takes over.
constexpr int kMaxPrimalDualSteps = 100;

struct PrimalDualStep {
  VectorXd dy, dz;
  Banded ds, dx;
  MatrixXd t, u;  // dense products only: dS M^-1 and Xh dS M^-1 (u: the predictor's only)
};

}  // namespace

Path primal_dual_path(const Reduced& r, VectorXd y, const LipSdpOptions& options) {
  const int n = r.n_multipliers;
  const double nu = r.dimension + n;
  Path path;
  path.status = "max_steps";
  Banded m = lmi_at(r, y);  // M at y, assembled once per point for the elimination and the iteration
  Elimination es = eliminate(m, EliminationOutput::InverseMaps);
  if (!es.ok) {
    path.status = "stalled";
    return path;
  }
  MatrixXd si, xh;  // M^-1 and Xh, dense
  lower_block_inverse(r, es, si);
  // Start on the central path's complementarity (X = mu M^-1 on E, z = mu / lambda), with X's trace
  // on the input block what the primal's rho row asks (1).
  const double mu0 = 1.0 / si.topLeftCorner(r.block_size(0), r.block_size(0)).trace();
  Banded x = scaled(symmetric_part_on_pattern(r, si, true), mu0);
  VectorXd z = mu0 * y.tail(n).cwiseInverse();
  NewtonSolver solver(options.single_precision_newton_from);
  MatrixXd b, si_w;  // the Newton system; M^-1 W for the dense products
  // Kept from step to step: fresh dense matrices of this size cost a page fault per page.
  PrimalDualStep affine, corrector;
  bool dense_products = false;  // once the chains lose accuracy, for the rest of the path
  for (;;) {
    path.points.push_back(y);
    const VectorXd lambda = y.tail(n);
    const double mu = (pattern_dot(x, m) + z.dot(lambda)) / nu;
    path.relative_gap = mu * nu / y(0);
    // Optimal: a primal-dual pair, X (nearly) feasible, so rho is within the gap of the optimum.
    VectorXd primal_residual = adjoint_map(r, x);
    primal_residual.tail(n) += z;
    primal_residual(0) -= 1.0;
    if (path.relative_gap <= options.tol && primal_residual.norm() <= kPrimalResidual) {
      path.status = "optimal";
      break;
    }
    if (path.steps >= std::min(options.max_newton_steps, kMaxPrimalDualSteps)) break;
    Banded kinv;
    if (!completion_inverse(r, x, kinv)) {
      path.status = "stalled";
      break;
    }
    const Elimination ek = eliminate(kinv, EliminationOutput::InverseMaps);
    if (!ek.ok) {
      path.status = "stalled";
      break;
    }
    lower_block_inverse(r, ek, xh);
    hkm_matrix(r, xh, si, b);
    b.diagonal().tail(n) += z.cwiseQuotient(lambda);
    ++path.steps;
    solver.factorize(b);
    const Banded si_e = symmetric_part_on_pattern(r, si, true);
    const VectorXd a_si = adjoint_map(r, si_e);

    // The Newton step towards X M = mu_t I, z lambda = mu_t, less the second-order term (K, kz). With
    // T = dS M^-1 and U = Xh T, dX = mu_t M^-1 - X - (U + U')/2 - K on E, where K = dX dS M^-1 with the
    // predictor's dX = -Xh - (U + U')/2, i.e. K = -U - (U T + T'U)/2 (its symmetric part on E).
    const ChainFactor lmi{&m, &es}, completion{&kinv, &ek};
    bool mirrored = false;  // si and xh hold their lower blocks; the dense products read whole rows
    auto direction = [&](PrimalDualStep& d, double mu_t, const Banded* k, const VectorXd* kz, Banded* second_order) {
      VectorXd rhs = mu_t * a_si;
      if (k) rhs -= adjoint_map(r, *k);
      rhs.tail(n) += mu_t * lambda.cwiseInverse();
      if (kz) rhs.tail(n) -= *kz;
      rhs(0) -= 1.0;
      d.dy = solver.solve(rhs);
      d.ds = lmi_change(r, d.dy);
      Banded u_sym;
      if (!dense_products) {
        if (second_order) {
          // The chain M, Xh^-1, M, M: G_12 = Xh dS M^-1 = U, G_13 = U T and G_02 = T'U.
          const ChainInverse chain({lmi, completion, lmi, lmi}, {&d.ds, &d.ds, &d.ds}, 2);
          u_sym = chain.symmetric_part(1, 2);
          *second_order = plus(plus(scaled(u_sym, -1.0), -0.5, chain.symmetric_part(1, 3)), -0.5, chain.symmetric_part(0, 2));
        } else {
          u_sym = ChainInverse({completion, lmi}, {&d.ds}, 1).symmetric_part(0, 1);
        }
        // tr(A_i U) = (B dy)_i less the LP part, exactly: how far the chain's U is off.
        VectorXd b_dy = lower_symmetric_product(b, d.dy);
        b_dy.tail(n) -= z.cwiseQuotient(lambda).cwiseProduct(d.dy.tail(n));
        dense_products = (adjoint_map(r, u_sym) - b_dy).norm() > kChainResidual * b_dy.norm();
      }
      if (dense_products) {
        if (!mirrored) {
          mirror_blocks(r, si);
          mirror_blocks(r, xh);
          mirrored = true;
          inverse_times_weights(r, si, si_w);
        }
        change_times_inverse(r, d.dy, si, si_w, d.t);
        if (second_order) {
          d.u = d.t;
          solve_in_place(r, ek, d.u);
          u_sym = symmetric_part_on_pattern(r, d.u);
          const Banded ut = symmetric_product_on_pattern(
              r, [&](int q) { return d.u.middleRows(r.block_offset[q], r.block_size(q)); }, d.t);
          const Banded tu = symmetric_product_on_pattern(
              r, [&](int q) { return d.t.middleCols(r.block_offset[q], r.block_size(q)).transpose(); }, d.u);
          *second_order = plus(plus(scaled(u_sym, -1.0), -0.5, ut), -0.5, tu);
        } else {
          u_sym = symmetric_product_on_pattern(r, [&](int q) { return xh.middleRows(r.block_offset[q], r.block_size(q)); }, d.t);
        }
      }
      d.dx = plus(plus(scaled(si_e, mu_t), -1.0, x), -1.0, u_sym);
      if (k) d.dx = plus(d.dx, -1.0, *k);
      d.dz = mu_t * lambda.cwiseInverse() - z - z.cwiseQuotient(lambda).cwiseProduct(d.dy.tail(n));
      if (kz) d.dz -= *kz;
    };
    // The primal and dual step lengths side by side: the dual one's eliminations go layer by layer on
    // one thread (measured: 12% of a solve on GLipSDP's MNIST W64 with 32 weights, one thread idle).
    auto step_lengths = [&](const PrimalDualStep& d, double cap, double& ap, double& ad) {
      for_each_index(2, true, [&](int side) {
        if (side == 0) ad = lmi_step(m, d.ds, std::min(cap, ratio_step(lambda, d.dy.tail(n))));
        else ap = clique_step(r, x, d.dx, std::min(cap, ratio_step(z, d.dz)));
      });
    };

    Banded k;
    direction(affine, 0.0, nullptr, nullptr, &k);
    double ap, ad;
    step_lengths(affine, 1.0, ap, ad);
    const double mu_affine =
        (pattern_dot(plus(x, ap, affine.dx), plus(m, ad, affine.ds)) + (z + ap * affine.dz).dot(lambda + ad * affine.dy.tail(n))) / nu;
    const double sigma = std::min(1.0, std::pow(mu_affine / mu, 3));
    // kz = dz dlambda / lambda, the LP part's second-order term.
    const VectorXd kz = affine.dz.cwiseProduct(affine.dy.tail(n)).cwiseQuotient(lambda);
    PrimalDualStep& d = corrector;
    direction(d, sigma * mu, &k, &kz, nullptr);
    if (!dense_products) ++path.chain_steps;
    const double gamma = step_to_boundary(ap, ad);
    step_lengths(d, 1.0 / gamma, ap, ad);
    ap = std::min(1.0, gamma * ap);
    ad = std::min(1.0, gamma * ad);
    if (!(ad > 0)) {
      path.status = "stalled";
      break;
    }
    y += ad * d.dy;
    x = plus(x, ap, d.dx);
    z += ap * d.dz;
    m = lmi_at(r, y);
    es = eliminate(m, EliminationOutput::InverseMaps);
    if (!es.ok) {
      path.status = "stalled";
      break;
    }
    lower_block_inverse(r, es, si);
  }
  return path;
}

}  // namespace lipcert::lipsdp
