// LipSDP solves: the log-barrier Newton method (block by block), and the driver around it and the
// primal-dual method of lipsdp_primal_dual.cpp (start, active set of LMIs, proof of the end points).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "lipcert/lipsdp.hpp"
#include "lipsdp_blocks.hpp"
#include "lipsdp_solver_parts.hpp"
#include "parallel_cholesky.hpp"

namespace lipcert {

namespace lipsdp {

// X = M^-1 from the elimination: X_00 = Sigma_0^-1, X_{k,j} = F_k X_{k-1,j}, X_kk = Sigma_k^-1 + X_{k,k-1} F_k'.
// Only the blocks on and below the diagonal are written: mirroring the rest took 38 ms of a 450 ms
// Newton step on GLipSDP's MNIST W64 with 64 weights, and its readers take X_{j,k} = X_{k,j}' instead.
// The diagonal and first subdiagonal blocks go in order; the rest, X_{k,j} for j < k - 1, by column
// panels side by side, each down its own columns (by rows, each a product with all columns before
// it, the threads shared each small product: 31 ms of a 0.76 s primal-dual iteration there).
void lower_block_inverse(const Reduced& r, const Elimination& e, MatrixXd& x) {
  constexpr int kPanel = 64;
  x.resize(r.dimension, r.dimension);
  const int n0 = r.block_size(0);
  x.topLeftCorner(n0, n0) = e.sigma[0].inverse();
  for (int k = 1; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k), prev = r.block_offset[k - 1], np = r.block_size(k - 1);
    x.block(o, prev, n, np).noalias() = e.f[k] * x.block(prev, prev, np, np);
    x.block(o, o, n, n) = e.sigma[k].inverse();
    x.block(o, o, n, n).noalias() += x.block(o, prev, n, np) * e.f[k].transpose();
  }
  std::vector<std::pair<int, int>> panels;  // (block j, first column), the longest columns first
  for (int j = 0; j + 2 <= r.l; ++j)
    for (int c = r.block_offset[j]; c < r.block_offset[j + 1]; c += kPanel) panels.emplace_back(j, c);
  for_each_index(static_cast<int>(panels.size()), panels.size() > 1 && !omp_in_parallel(), [&](int p) {
    const auto [j, c] = panels[p];
    const int width = std::min(kPanel, r.block_offset[j + 1] - c);
    for (int k = j + 2; k <= r.l; ++k)
      x.block(r.block_offset[k], c, r.block_size(k), width).noalias() =
          e.f[k] * x.block(r.block_offset[k - 1], c, r.block_size(k - 1), width);
  });
}

// LMI r's M at y = (rho, one multiplier per group).
lipsdp::BlockTridiagonal lmi_at(const Reduced& r, const VectorXd& y) {
  const auto shared = y.tail(y.size() - 1);
  return lipsdp::assemble(r.w, r.slopes, r.identity_groups ? VectorXd(shared) : lipsdp::group_values(r.group, shared), y(0));
}

void inverse_times_weights(const Reduced& r, const MatrixXd& x, MatrixXd& xw) {
  const auto& mo = r.multiplier_offset;
  xw.resize(r.dimension, r.n_multipliers);
  for (int k = 1; k <= r.l; ++k) {
    // X's column block k-1: its rows above block k-1 are the transposed row block, the rest is stored.
    const int o = r.block_offset[k - 1], n = r.block_size(k - 1), width = mo[k + 1] - mo[k];
    const auto wt = r.w[k - 1].transpose();
    xw.block(0, mo[k], o, width).noalias() = x.block(o, 0, n, o).transpose() * wt;
    xw.block(o, mo[k], r.dimension - o, width).noalias() = x.block(o, o, r.dimension - o, n) * wt;
  }
}

void NeuronPairBlocks::row(int k) {
  k_ = k;
  const int o = r_.block_offset[k - 1], n = r_.block_size(k - 1), stored = r_.block_offset[k];
  wx_.resize(r_.w[k - 1].rows(), r_.block_offset[k + 1]);
  wx_.leftCols(stored).noalias() = r_.w[k - 1] * x_.block(o, 0, n, stored);
  // X_{k-1,k} = X_{k,k-1}'.
  wx_.rightCols(r_.block_size(k)).noalias() = r_.w[k - 1] * x_.block(stored, o, r_.block_size(k), n).transpose();
}

void NeuronPairBlocks::column(int kk) {
  const int o = r_.block_offset[k_], n = r_.block_size(k_);
  const int oc = r_.block_offset[kk], nc = r_.block_size(kk), op = r_.block_offset[kk - 1], np = r_.block_size(kk - 1);
  const auto wt = r_.w[kk - 1].transpose();
  ee = x_.block(o, oc, n, nc);
  ew.noalias() = x_.block(o, op, n, np) * wt;
  we = wx_.middleCols(oc, nc);
  ww.noalias() = wx_.middleCols(op, np) * wt;
}

}  // namespace lipsdp

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using lipsdp::BlockTridiagonal;
using lipsdp::Elimination;
using lipsdp::eliminate;
using lipsdp::EliminationOutput;
using lipsdp::LayerSlopes;
using lipsdp::lmi_at;
using lipsdp::lower_block_inverse;
using lipsdp::NeuronPairBlocks;
using lipsdp::NewtonSolver;
using lipsdp::Path;
using lipsdp::Reduced;
using lipsdp::Workspace;

constexpr double kInf = std::numeric_limits<double>::infinity();

MatrixXd upper_r(const MatrixXd& tall) {
  Eigen::HouseholderQR<MatrixXd> qr(tall);
  return qr.matrixQR().topRows(tall.cols()).triangularView<Eigen::Upper>();
}

double spectral_norm_or_zero(const MatrixXd& w) {
  const double s = w.size() == 0 ? 0.0 : Eigen::BDCSVD<MatrixXd>(w).singularValues()(0);
  return std::isfinite(s) ? s : 0.0;
}

// The LMIs of `problem`, reduced and scaled alike; log_sigma[k] = log sigma_k, k = 0..l+1.
std::vector<Reduced> reduce(const SharedLipSdp& problem, std::vector<double>& log_sigma) {
  std::vector<Reduced> parts(problem.parts.size());
  const int l = problem.parts[0].hidden_layers();
  std::vector<double> scale(l + 1, 0.0);
  for (size_t f = 0; f < parts.size(); ++f) {
    const SlopeRestrictedNetwork& net = problem.parts[f];
    Reduced& r = parts[f];
    r.w = net.weights;
    r.slopes = lipsdp::layer_slopes(net);
    r.l = l;
    if (r.w[0].cols() > r.w[0].rows()) r.w[0] = upper_r(r.w[0].transpose()).transpose();
    if (r.w[l].rows() > r.w[l].cols()) r.w[l] = upper_r(r.w[l]);
    for (int k = 0; k <= l; ++k) scale[k] = std::max(scale[k], spectral_norm_or_zero(r.w[k]));
    r.group = problem.groups[f];
    r.identity_groups = problem.parts.size() == 1 && static_cast<int>(r.group.size()) == problem.multipliers;
    for (size_t i = 0; r.identity_groups && i < r.group.size(); ++i) r.identity_groups = r.group[i] == static_cast<int>(i);
  }
  log_sigma.assign(l + 2, 0.0);
  for (int k = 0; k <= l; ++k) {
    if (!(scale[k] > 0)) scale[k] = 1.0;
    log_sigma[k + 1] = log_sigma[k] + std::log(scale[k]);
  }
  for (Reduced& r : parts) {
    for (int k = 0; k <= l; ++k) r.w[k] /= scale[k];
    r.multiplier_offset = lipsdp::multiplier_offsets(r.w);
    r.n_multipliers = r.multiplier_offset[l + 1];
    r.block_offset.assign(l + 2, 0);
    for (int k = 0; k <= l; ++k) r.block_offset[k + 1] = r.block_offset[k] + r.block_size(k);
    r.dimension = r.block_offset[l + 1];
  }
  return parts;
}

// The barrier's Newton system in y = (rho, one multiplier per group): gradient and Hessian of
// t rho - sum log det M - log barrier. Only the Hessian's lower triangle is formed (and read).
struct NewtonSystem {
  VectorXd gradient;
  MatrixXd hessian;
};

// Whether to run the LMIs side by side, one per thread, rather than each on every thread: many small
// LMIs (a convolution's frequencies) gain, one or a few wide ones parallelise inside.
bool by_part(size_t parts) { return parts >= 4; }

// The parts' vectors end to end; empty if any part's is (its LMI failed).
VectorXd concatenated(const std::vector<VectorXd>& parts) {
  Eigen::Index total = 0;
  for (const VectorXd& v : parts) {
    if (v.size() == 0) return VectorXd();
    total += v.size();
  }
  VectorXd all(total);
  total = 0;
  for (const VectorXd& v : parts) {
    all.segment(total, v.size()) = v;
    total += v.size();
  }
  return all;
}

// floor + g for the root g > 0 of slope(g), a function rising in g (the derivative of a convex 1-D
// barrier above its pole at floor), found by doubling from `start` and bisection.
template <class Slope>
double root_above(double floor, double start, Slope slope) {
  double lo = 0.0, hi = std::max(start - floor, std::numeric_limits<double>::min());
  for (int i = 0; i < 2100 && slope(hi) < 0; ++i) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (slope(mid) < 0 ? lo : hi) = mid;
  }
  return floor + hi;
}

// The weight of the multipliers' barrier -sum log lambda. It only has to keep lambda > 0 (which the LMI
// itself implies when no slope product a is positive, e.g. ReLU), and at weight 1 it pulls the central
// path towards the multipliers' own centre, away from the LMI's: GLipSDP's MNIST W64 (LeakyReLU) with
// 16 / 32 / 64 weights took 81 / 134 / 246 Newton steps at weight 1, 66 / 117 / 202 at 0.01 (and
// 66 / 112 / 200 without the term); the ECLipsE grid's 30 x 40 and 30 x 60, 131 and 122 -> 82 and 90.
// Every weight > 0 ends at the same optimum, and the duality gap at a centred point is still nu / t
// with nu counting the multipliers at this weight.
constexpr double kMultiplierBarrierWeight = 0.01;

class Barrier {
 public:
  Barrier(const std::vector<Reduced>& parts, int groups) : parts_(parts), groups_(groups) {
    variables_ = 1 + groups;
    nu_ = kMultiplierBarrierWeight * groups;
    for (const Reduced& r : parts) nu_ += r.dimension;
  }
  int variables() const { return variables_; }
  double nu() const { return nu_; }

  // The barrier value at y with parameter t, or +inf outside the feasible set.
  double value(const VectorXd& y, double t) const {
    if (!(y.tail(groups_).array() > 0).all()) return kInf;
    const KeptEliminations& kept = kept_at(y);
    double sum = 0.0;
    for (const Elimination& e : kept.parts) sum += shifted_logdet(e, y(0) - kept.rho);
    if (!std::isfinite(sum)) return kInf;
    return t * y(0) - sum - kMultiplierBarrierWeight * y.tail(groups_).array().log().sum();
  }

  // The Newton system at (y, t), written into s (whose buffers are reused).
  void newton_system(const VectorXd& y, double t, NewtonSystem& s) const;

  // Barrier_minimising_rho's input: the eigenvalues of Sigma_0 - rho I of every LMI.
  VectorXd input_schur_shifts(const VectorXd& y) const;
  // The s > 0 that minimises the barrier at s y (1 where no s makes s y feasible). M(s y) = s P - C
  // with P = M(y) + C and C = G'G (G = W_l) only in the output block, so det M(s y) =
  // s^(n - J) det P prod_j (s - kappa_j), kappa_j the J eigenvalues of G Q^-1 G' (Q the Schur
  // complement of P onto the output block), and the barrier is t rho s - (nu - J) log s -
  // sum_j log(s - kappa_j) plus terms without s: convex, minimised at the root of its derivative.
  double best_scale(const VectorXd& y, double t) const;

 private:
  // LMI r's share of the Newton system at the point of its elimination e, added into s; its neurons'
  // quantities go through ws.
  void add_part(const Reduced& r, const Elimination& e, NewtonSystem& s, Workspace& ws) const;

  // Each LMI's elimination of its hidden blocks (EliminationOutput::InputSchur) at one point, kept for
  // the next call at the same multipliers: rho enters M only in its input block, and the barrier is
  // valued, moved along rho and given its Newton system at each accepted point's multipliers
  // (measured: eliminations were half of a solve of 784-1000-1000-10; kept, the solve took 0.81x the
  // time).
  struct KeptEliminations {
    VectorXd lambda;                 // the point's multipliers
    double rho = 0.0;                // and rho
    std::vector<Elimination> parts;  // one per LMI; empty once a Newton system has taken them
  };
  // kept_, formed at y unless it holds y's multipliers.
  const KeptEliminations& kept_at(const VectorXd& y) const;

  const std::vector<Reduced>& parts_;
  int groups_;
  int variables_;
  double nu_;
  mutable std::vector<Workspace> ws_;
  mutable std::vector<NewtonSystem> partial_;
  mutable KeptEliminations kept_;
};

const Barrier::KeptEliminations& Barrier::kept_at(const VectorXd& y) const {
  if (kept_.parts.size() == parts_.size() && kept_.lambda.size() == groups_ && kept_.lambda == y.tail(groups_))
    return kept_;
  kept_.parts.assign(parts_.size(), Elimination());
  lipsdp::for_each_index(static_cast<int>(parts_.size()), by_part(parts_.size()), [&](int f) {
    kept_.parts[f] = eliminate(lmi_at(parts_[f], y), EliminationOutput::InputSchur);
  });
  kept_.lambda = y.tail(groups_);
  kept_.rho = y(0);
  return kept_;
}

void Barrier::newton_system(const VectorXd& y, double t, NewtonSystem& s) const {
  s.gradient.setZero(variables_);
  s.hessian.resize(variables_, variables_);
  // One LMI with a multiplier per neuron writes (not adds) every lambda entry of the lower triangle,
  // so only rho's column needs zeroing: zeroing all of it cost 2% of a step on GLipSDP's MNIST W64.
  if (parts_.size() == 1 && parts_[0].identity_groups) s.hessian.col(0).setZero();
  else s.hessian.setZero();
  const int n = static_cast<int>(parts_.size());
  // The Newton system is the last use of these eliminations at y's multipliers: it takes them over.
  kept_at(y);
  KeptEliminations kept = std::move(kept_);
  kept_.parts.clear();
  auto add = [&](int f, NewtonSystem& into, Workspace& ws) {
    const Elimination e = finished(std::move(kept.parts[f]), y(0) - kept.rho, EliminationOutput::InverseMaps);
    if (!e.ok) throw std::runtime_error("LipSDP: Newton system requested at an infeasible point");
    add_part(parts_[f], e, into, ws);
  };
  if (!by_part(parts_.size())) {
    ws_.resize(1);
    for (int f = 0; f < n; ++f) add(f, s, ws_[0]);
  } else {
    const int threads = omp_get_max_threads();
    ws_.resize(threads);
    partial_.resize(threads);
    for (NewtonSystem& p : partial_) {
      p.gradient.setZero(variables_);
      p.hessian.setZero(variables_, variables_);
    }
#pragma omp parallel for schedule(dynamic)
    for (int f = 0; f < n; ++f) {
      const int me = omp_get_thread_num();
      add(f, partial_[me], ws_[me]);
    }
    for (const NewtonSystem& p : partial_) {
      s.gradient += p.gradient;
      s.hessian += p.hessian;
    }
  }
  s.gradient(0) += t;
  const auto lambda = y.tail(groups_);
  s.gradient.tail(groups_) -= kMultiplierBarrierWeight * lambda.cwiseInverse();
  s.hessian.diagonal().tail(groups_) += kMultiplierBarrierWeight * lambda.cwiseInverse().cwiseAbs2();
}

// With A_i = G_i S_k G_i', G_i = [e_i, w_i] (w_i = row i of W_{k-1}, placed in block k-1) and
// S_k = [[1, -c_k], [-c_k, a_k]]: tr(X A_i) and tr(X A_i X A_j) = tr(S_k B_ij S_k' B_ij'),
// B_ij = G_i' X G_j, whose entries are NeuronPairBlocks' ee, ew, we and ww. The lower triangle of
// s.hessian is added to.
void Barrier::add_part(const Reduced& r, const Elimination& e, NewtonSystem& s, Workspace& ws) const {
  const int big_n = r.n_multipliers, n0 = r.block_size(0);
  MatrixXd& x = ws.x;
  lower_block_inverse(r, e, x);
  const auto& mo = r.multiplier_offset;
  const auto re = x.bottomLeftCorner(big_n, n0);
  VectorXd &trace_xa = ws.trace_xa, &cross_rho = ws.cross_rho;
  trace_xa.resize(big_n);
  cross_rho.resize(big_n);
  // tr(S B S' B') expanded in the entries of B (S = [[1, -c], [-c, a]] on the left, [[1, -c2], [-c2, a2]]
  // on the right): the lower triangle only (H is symmetric), by rows of layer blocks. With identity
  // groups (then the only LMI) it is written straight into the Newton system.
  if (!r.identity_groups) ws.h.resize(big_n, big_n);
  auto h = r.identity_groups ? s.hessian.block(1, 1, big_n, big_n) : ws.h.block(0, 0, big_n, big_n);
  NeuronPairBlocks::for_each_row(r, [&] { return NeuronPairBlocks(r, x); }, [&](NeuronPairBlocks& p, int k) {
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    p.row(k);
    const auto rw = p.weighted_input();
    for (int kk = k; kk >= 1; --kk) {
      const double c2 = r.slopes[kk - 1].c, a2 = r.slopes[kk - 1].a;
      p.column(kk);
      const auto bee = p.ee.array(), bew = p.ew.array(), bwe = p.we.array(), bww = p.ww.array();
      h.block(mo[k], mo[kk], mo[k + 1] - mo[k], mo[kk + 1] - mo[kk]) =
          (bee * (bee - 2 * c * bwe - 2 * c2 * bew + 2 * c * c2 * bww) +
           bew * (a2 * bew + 2 * c * c2 * bwe - 2 * a2 * c * bww) + bwe * (a * bwe - 2 * a * c2 * bww) +
           (a * a2) * bww * bww)
              .matrix();
      if (kk != k) continue;
      for (int i = mo[k]; i < mo[k + 1]; ++i) {
        const int q = i - mo[k];
        trace_xa(i) = p.ee(q, q) - 2 * c * p.ew(q, q) + a * p.ww(q, q);
        cross_rho(i) = re.row(i).squaredNorm() - 2 * c * re.row(i).dot(rw.row(q)) + a * rw.row(q).squaredNorm();
      }
    }
  });

  s.gradient(0) -= x.topLeftCorner(n0, n0).trace();
  s.hessian(0, 0) += x.topLeftCorner(n0, n0).squaredNorm();
  if (r.identity_groups) {
    s.gradient.tail(big_n) -= trace_xa;
    s.hessian.block(1, 0, big_n, 1) += cross_rho;
    return;
  }
  // Summed into the groups: H_gh = sum of h_ij over i in g, j in h, over both triangles of h.
  for (int i = 0; i < big_n; ++i) {
    const int gi = 1 + r.group[i];
    s.gradient(gi) -= trace_xa(i);
    s.hessian(gi, 0) += cross_rho(i);
    s.hessian(gi, gi) += h(i, i);
    for (int j = 0; j < i; ++j) {
      const int gj = 1 + r.group[j];
      // h_ij and h_ji = h_ij both land in the lower triangle at (max, min).
      if (gi >= gj) s.hessian(gi, gj) += (gi == gj ? 2.0 : 1.0) * h(i, j);
      else s.hessian(gj, gi) += h(i, j);
    }
  }
}

VectorXd Barrier::input_schur_shifts(const VectorXd& y) const {
  std::vector<VectorXd> shifts(parts_.size());
  const KeptEliminations& kept = kept_at(y);
  lipsdp::for_each_index(static_cast<int>(parts_.size()), by_part(parts_.size()), [&](int f) {
    const Elimination& e = kept.parts[f];
    if (!e.ok || !e.input_schur.allFinite()) return;
    MatrixXd c = e.input_schur;
    c.diagonal().array() -= kept.rho;
    shifts[f] = Eigen::SelfAdjointEigenSolver<MatrixXd>(c, Eigen::EigenvaluesOnly).eigenvalues();
  });
  return concatenated(shifts);
}

// M with its blocks in reverse order, so that eliminate() ends at the output block.
BlockTridiagonal reversed(BlockTridiagonal m) {
  const int l = static_cast<int>(m.diag.size()) - 1;
  BlockTridiagonal r;
  r.diag.resize(l + 1);
  r.sub.resize(l + 1);
  for (int k = 0; k <= l; ++k) r.diag[k] = std::move(m.diag[l - k]);
  for (int k = 1; k <= l; ++k) r.sub[k] = m.sub[l - k + 1].transpose();
  return r;
}

double Barrier::best_scale(const VectorXd& y, double t) const {
  if (!(y.tail(groups_).array() > 0).all() || !(y(0) > 0)) return 1.0;
  std::vector<VectorXd> kappa(parts_.size());
  lipsdp::for_each_index(static_cast<int>(parts_.size()), by_part(parts_.size()), [&](int f) {
    const Reduced& r = parts_[f];
    const Elimination e = eliminate(reversed(lmi_at(r, y)), EliminationOutput::InputSchur);
    if (e.input_schur.size() == 0 || !e.input_schur.allFinite()) return;
    const MatrixXd& g = r.w[r.l];
    MatrixXd q = e.input_schur;
    q.noalias() += g.transpose() * g;
    const Eigen::LLT<MatrixXd> llt(q);
    if (llt.info() != Eigen::Success) return;
    const MatrixXd root = llt.matrixL().solve(g.transpose());  // L^-1 G': G Q^-1 G' = root' root
    kappa[f] = Eigen::SelfAdjointEigenSolver<MatrixXd>(root.transpose() * root, Eigen::EigenvaluesOnly).eigenvalues();
  });
  const VectorXd all = concatenated(kappa);
  if (all.size() == 0) return 1.0;
  const double floor = std::max(0.0, all.maxCoeff());
  const double free_power = nu_ - static_cast<double>(all.size());
  const double s = root_above(floor, 1.0, [&](double gap) {
    return t * y(0) - free_power / (floor + gap) - (floor + gap - all.array()).inverse().sum();
  });
  return std::isfinite(s) && s > 0 ? s : 1.0;
}

// Where rho + min c_i is below this fraction of rho + max c_i, rounding in the c_i could make the
// closed-form change in the barrier wrong (or hide that the new rho is infeasible), and the barrier is
// valued at the new rho instead (measured: fractions down to 5e-11 on the ECLipsE grid and GLipSDP's
// MNIST W64 at tol 1e-7, 4e-13 on a rotated separable network at tol 1e-9).
constexpr double kClosedFormMargin = 1e-9;

// The exact minimiser over rho of the barrier at fixed lambda, and the barrier there (given its value
// at y). rho enters each M only through M_00, so the barrier is t rho - sum log det(rho I + C) + (terms
// without rho), with C = Sigma_0 - rho I from each backward elimination: its minimiser is the root of
// t = sum_i 1 / (rho + c_i) above -min c_i, and the barrier's change follows from the c_i.
struct RhoMove {
  double rho;
  double value;
};
RhoMove barrier_minimising_rho(const Barrier& barrier, const VectorXd& y, double t, double value_at_y) {
  const VectorXd ev = barrier.input_schur_shifts(y);
  if (ev.size() == 0) return {y(0), value_at_y};
  const double floor = -ev.minCoeff();
  const double rho = root_above(floor, y(0), [&](double gap) { return t - (floor + gap + ev.array()).inverse().sum(); });
  if (!(std::isfinite(rho) && rho > 0)) return {y(0), value_at_y};
  if (rho + ev.minCoeff() < kClosedFormMargin * (rho + ev.maxCoeff())) {
    VectorXd moved = y;
    moved(0) = rho;
    return {rho, barrier.value(moved, t)};
  }
  const double shift = rho - y(0);
  double value = value_at_y + t * shift;
  for (double c : ev) value -= std::log1p(shift / (y(0) + c));
  return {rho, value};
}

// Newton decrement^2 below which a point counts as centred: 0.1 on the last decades of the path, whose
// points the proof tries and whose gap estimate is reported; 1 before, where a centred point only
// leads the predictor on. Measured: GLipSDP's MNIST W64 with 16 / 32 / 64 weights 66 / 117 / 202 ->
// 59 / 103 / 193 Newton steps, the ECLipsE grid's 10 x 40 and 30 x 60 55 and 90 -> 45 and 78, with
// bounds equal to 1e-6. Centring loosely to the end left the last points too far off the path: the
// proved bound on W64 with 64 weights came out 0.5% higher.
constexpr double kCentred = 0.1;
constexpr double kLooselyCentred = 1.0;
// Centring is tight once the gap estimate nu / (t rho) is below this many times the tolerance.
constexpr double kTightDecades = 1e4;
// The factors by which the predictor tries to raise t, largest first.
constexpr double kPredictorFactors[] = {64.0, 16.0, 8.0, 4.0, 2.0};

double largest_eigenvalue(const MatrixXd& symmetric) {
  Eigen::SelfAdjointEigenSolver<MatrixXd> eig(symmetric, Eigen::EigenvaluesOnly);
  return eig.eigenvalues().maxCoeff();
}

// The hidden layer of each multiplier group (validate() checks that a group stays in one layer).
std::vector<int> group_layers(const SharedLipSdp& problem) {
  std::vector<int> layer(problem.multipliers, 0);
  const std::vector<int> offsets = lipsdp::multiplier_offsets(problem.parts[0].weights);
  for (int k = 1; k < static_cast<int>(offsets.size()) - 1; ++k)
    for (int i = offsets[k]; i < offsets[k + 1]; ++i) layer[problem.groups[0][i]] = k;
  return layer;
}

// A strictly feasible start with one multiplier per layer: from the output backwards, t_k is `margin`
// times what keeps every LMI's backward Schur complement Sigma_k = t_k I + Q_k definite, and rho
// likewise. The barrier method starts from margin 2: closer starts (measured: 2^(1/l)) sit near the
// boundary and centre far slower.
constexpr double kBarrierStartMargin = 2.0;
// The primal-dual method starts centred wherever it starts, and most of its iterations on deep networks
// go to lowering rho (MNIST W64 with 64 weights: rho fell 6e4-fold over 28 of 38 iterations). Measured
// over 11 networks of 30-100 hidden layers (GLipSDP's MNIST L33/L65 W16/W32, random tanh, sigmoid,
// LeakyReLU and ReLU, the ECLipsE grid's 24 x 60, 70 x 20, 100 x 16): 366 iterations from margin 2,
// 329 / 319 / 316 / 309 from 1.8 / 1.75 / 1.7 / 1.6. MNIST W64 with 32 weights, though, took 25 / 24 /
// 27 / 25 from 2 / 1.8 / 1.75 / 1.7, and from 1.6 ended just short of its gap (1.3e-7) and stalled
// there; so the start keeps some distance from that.
constexpr double kPrimalDualStartMargin = 1.8;
VectorXd feasible_start(const std::vector<Reduced>& parts, const std::vector<int>& group_layer,
                        double margin = kBarrierStartMargin) {
  const int l = parts[0].l;
  std::vector<double> layer_value(l + 1, 1.0);
  std::vector<MatrixXd> sigma_inverse(parts.size());  // Sigma_{k+1}^-1 per LMI
  double scale = 1.0, rho = 1.0;
  for (int k = l; k >= 0; --k) {
    std::vector<MatrixXd> q(parts.size());  // Sigma_k - (t_k I or rho I)
    double need = 0.0;
    for (size_t f = 0; f < parts.size(); ++f) {
      const Reduced& r = parts[f];
      const int n = r.block_size(k);
      q[f] = MatrixXd::Zero(n, n);
      if (k == l) {
        q[f].noalias() -= r.w[l].transpose() * r.w[l];
      } else {
        const double tn = layer_value[k + 1];
        const auto& sl = r.slopes[k];
        if (sl.a != 0.0) q[f].noalias() += sl.a * tn * (r.w[k].transpose() * r.w[k]);
        const MatrixXd b = -sl.c * tn * r.w[k];
        q[f].noalias() -= b.transpose() * sigma_inverse[f] * b;
      }
      need = std::max(need, largest_eigenvalue(-q[f]));
    }
    const double value = need > 0 ? margin * need : scale;
    scale = value;
    if (k == 0) {
      rho = value;
      break;
    }
    layer_value[k] = value;
    for (size_t f = 0; f < parts.size(); ++f) {
      MatrixXd sigma = q[f];
      sigma.diagonal().array() += value;
      const int n = parts[f].block_size(k);
      sigma_inverse[f] = sigma.llt().solve(MatrixXd::Identity(n, n));
    }
  }
  VectorXd y(1 + group_layer.size());
  y(0) = rho;
  for (size_t g = 0; g < group_layer.size(); ++g) y(1 + g) = layer_value[group_layer[g]];
  return y;
}

// (rho, multipliers) of the unscaled problem.
VectorXd original_scale(const std::vector<double>& log_sigma, const std::vector<int>& group_layer, VectorXd y) {
  const double top = log_sigma.back();
  y(0) *= std::exp(2 * top);
  for (size_t g = 0; g < group_layer.size(); ++g) y(1 + g) *= std::exp(2 * (top - log_sigma[group_layer[g]]));
  return y;
}

enum class Centring { Centred, Stalled, OutOfSteps };

// Newton centring of the barrier at t, from y in place, until the Newton decrement^2 is below
// `centred` or `steps` (the Newton systems formed, counted on) reaches max_steps. The solver keeps the
// last factorisation, at the centred point, for the predictor's tangent.
//
// With scale_search, each trial point of the line search is taken at its best scaling (best_scale):
// on GLipSDP's deep MNIST MLPs the central path bends mostly along y itself, and full Newton steps
// moved every variable by the same 0.2% for dozens of steps. Not in the first centring: there the
// start's shape, not its scale, is what is off, and scaled trial points left Newton directions that
// only took 1/64 steps (measured: 85 steps instead of 52 on W64 with 32 weights).
Centring centre(const Barrier& barrier, VectorXd& y, double t, double centred, bool scale_search, int max_steps,
                int& steps, NewtonSystem& s, NewtonSolver& solver) {
  double f = barrier.value(y, t);  // the barrier at y, carried from step to step
  while (steps < max_steps) {
    barrier.newton_system(y, t, s);
    ++steps;
    solver.factorize(s.hessian);
    const VectorXd step = -solver.solve(s.gradient);
    const double decrement2 = -s.gradient.dot(step);
    if (!std::isfinite(decrement2)) return Centring::Stalled;
    if (decrement2 < centred) return Centring::Centred;
    double alpha = 1.0;
    bool moved = false;
    const double f_start = f;
    for (int ls = 0; ls < 60; ++ls, alpha *= 0.5) {
      VectorXd trial = y + alpha * step;
      if (scale_search) trial *= barrier.best_scale(trial, t);
      const double f_trial = barrier.value(trial, t);
      if (std::isfinite(f_trial) && f_trial <= f_start - 0.25 * alpha * decrement2) {
        y = trial;
        f = f_trial;
        moved = true;
        break;
      }
    }
    if (!moved) return Centring::Stalled;
    // Far from the centre the barrier can fall like -k log(distance) along the Newton direction,
    // where full steps only double the distance: extend the step while that keeps paying.
    for (double longer = 2 * alpha; alpha == 1.0 && longer <= 1 << 20; longer *= 2) {
      const VectorXd trial = y + (longer - longer / 2) * step;
      const double f_trial = barrier.value(trial, t);
      if (!(f_trial < f)) break;
      y = trial;
      f = f_trial;
    }
    // rho is then set to its exact minimiser: without this, rho oscillated from step to step and
    // the first centring on deep networks took 100-200 damped steps at a decrement of about 2
    // (measured on GLipSDP's MNIST W64 with 16 weights: 191 steps, 23 with it).
    const RhoMove rho = barrier_minimising_rho(barrier, y, t, f);
    if (rho.value <= f) {
      y(0) = rho.rho;
      f = rho.value;
    }
  }
  return Centring::OutOfSteps;
}

// Follows the barrier's central path from y at t until the gap nu / (t rho) is below tol, or its
// lower estimate of the optimum rho - nu / t is above options.stop_above (given in the solver's scaling
// of rho): Newton centring at each t, then a predictor step along the path's tangent to a larger t.
Path follow_path(const Barrier& barrier, VectorXd y, double t, const LipSdpOptions& options) {
  Path path;
  NewtonSystem s;
  NewtonSolver solver(options.single_precision_newton_from);
  auto gap_estimate = [&] { return barrier.nu() / t / std::max(y(0), 1e-300); };
  for (;;) {
    const bool scale_search = !path.points.empty();
    const bool near_optimum = gap_estimate() <= kTightDecades * options.tol;
    const double centred = near_optimum ? kCentred : kLooselyCentred;
    const Centring c = centre(barrier, y, t, centred, scale_search, options.max_newton_steps, path.steps, s, solver);
    if (c != Centring::Centred) {
      path.status = c == Centring::Stalled ? "stalled" : "max_steps";
      break;
    }
    path.points.push_back(y);
    path.relative_gap = gap_estimate();
    if (path.relative_gap <= options.tol) { path.status = "optimal"; break; }
    if (y(0) * (1 - path.relative_gap) > options.stop_above) { path.status = "above"; break; }
    // Predictor: the central path is close to linear in 1/t (y(t) ~ y* + c / t), so its tangent
    // dy/dt = -H^-1 e_rho (H, the barrier's Hessian, does not depend on t) is followed in 1/t:
    // y(mu t) ~ y + (1 - 1/mu) t dy/dt, to the largest mu that keeps it feasible; then centre there.
    // (Followed in t, as y + (mu - 1) t dy/dt, it overshot for any mu > 2: 20-50% more steps on the
    // ECLipsE grid and GLipSDP's MNIST models.)
    const VectorXd tangent = -solver.solve(VectorXd::Unit(barrier.variables(), 0));
    double mu = 1.0;
    for (double trial_mu : kPredictorFactors) {
      const VectorXd trial = y + (1 - 1 / trial_mu) * t * tangent;
      if (std::isfinite(barrier.value(trial, trial_mu * t))) {
        y = trial;
        mu = trial_mu;
        break;
      }
    }
    t *= std::max(mu, 2.0);
  }
  if (path.points.empty() || path.points.back() != y) path.points.push_back(y);
  return path;
}

// Whether y is feasible for LMI r with a relative margin: M - kSlack diag(M) is definite. A point the
// barrier left just inside an inactive LMI's boundary would fail the proof's rounding margins there.
constexpr double kSlack = 1e-6;
// Rounds of the active-set loop in solve_lipsdp before it gives up (each adds at least one LMI).
constexpr int kMaxRounds = 50;
bool feasible_with_margin(const Reduced& r, const VectorXd& y) {
  if (!(y.tail(y.size() - 1).array() > 0).all()) return false;
  lipsdp::BlockTridiagonal m = lmi_at(r, y);
  for (MatrixXd& block : m.diag) block.diagonal() *= 1 - kSlack;
  return eliminate(m, EliminationOutput::LogDet).ok;
}

// The inactive LMIs that `end` violates first: on the segment from `start` (feasible for all) to `end`,
// those infeasible just past the last point where all inactive ones hold (the cutting plane's choice:
// adding every LMI `end` violates added most of them at once, where few are tight at the optimum).
// Each LMI's feasible set is convex, so each violated one leaves the segment once: it is located by its
// own bisection, and those that leave in the first bisection cell are returned. Bisecting the segment
// for all of them together instead valued every inactive LMI at every point (measured: 20-25% of the
// solve on GLipSDP's MNIST CNNs C17-CH8 and C9-CH16, with 421 frequencies).
std::vector<char> first_violated(const std::vector<Reduced>& parts, const std::vector<char>& active,
                                 const VectorXd& start, const VectorXd& end) {
  const int n = static_cast<int>(parts.size());
  std::vector<double> leaves(parts.size(), kInf);  // the end of the cell where LMI f leaves
  lipsdp::for_each_index(n, by_part(parts.size()), [&](int f) {
    if (active[f] || feasible_with_margin(parts[f], end)) return;
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < 12; ++i) {
      const double mid = 0.5 * (lo + hi);
      (feasible_with_margin(parts[f], start + mid * (end - start)) ? lo : hi) = mid;
    }
    leaves[f] = hi;
  });
  const double first = *std::min_element(leaves.begin(), leaves.end());
  std::vector<char> out(parts.size(), 0);
  for (int f = 0; f < n; ++f) out[f] = leaves[f] == first && first <= 1.0;
  return out;
}

// A network's LipSDP as a shared problem of one LMI: one group per neuron, or per layer.
SharedLipSdp single_lmi(const SlopeRestrictedNetwork& net, MultiplierKind kind) {
  SharedLipSdp problem;
  problem.parts = {net};
  const std::vector<int> offsets = lipsdp::multiplier_offsets(net.weights);
  std::vector<int> group(net.neurons());
  for (int k = 1; k <= net.hidden_layers(); ++k)
    for (int i = offsets[k]; i < offsets[k + 1]; ++i) group[i] = kind == MultiplierKind::PerLayer ? k - 1 : i;
  problem.groups = {group};
  problem.multipliers = kind == MultiplierKind::PerLayer ? net.hidden_layers() : net.neurons();
  return problem;
}

}  // namespace

VectorXd SharedLipSdp::neuron_multipliers(int part, const Eigen::Ref<const VectorXd>& shared) const {
  return lipsdp::group_values(groups[part], shared);
}

void SharedLipSdp::validate() const {
  if (parts.empty()) throw std::invalid_argument("LipSDP: a shared problem needs at least one LMI");
  if (groups.size() != parts.size()) throw std::invalid_argument("LipSDP: groups needs one entry per LMI");
  const int l = parts[0].hidden_layers();
  std::vector<int> layer(multipliers, -1);
  for (size_t f = 0; f < parts.size(); ++f) {
    parts[f].validate();
    if (parts[f].hidden_layers() != l)
      throw std::invalid_argument("LipSDP: the LMIs of a shared problem need the same number of hidden layers");
    if (static_cast<int>(groups[f].size()) != parts[f].neurons())
      throw std::invalid_argument("LipSDP: LMI " + std::to_string(f) + " needs one group per neuron");
    const std::vector<int> offsets = lipsdp::multiplier_offsets(parts[f].weights);
    for (int k = 1; k <= l; ++k)
      for (int i = offsets[k]; i < offsets[k + 1]; ++i) {
        const int g = groups[f][i];
        if (g < 0 || g >= multipliers) throw std::invalid_argument("LipSDP: group index out of range");
        if (layer[g] != -1 && layer[g] != k)
          throw std::invalid_argument("LipSDP: a multiplier group spans two hidden layers");
        layer[g] = k;
      }
  }
  const std::vector<int> in_first = group_layers(*this);  // 0 where LMI 0 lacks the group
  for (int g = 0; g < multipliers; ++g)
    if (in_first[g] == 0) throw std::invalid_argument("LipSDP: LMI 0 must hold every multiplier group");
}

LipSdpResult solve_lipsdp(const SharedLipSdp& problem, const LipSdpOptions& options) {
  problem.validate();
  if (!(options.tol > 0)) throw std::invalid_argument("LipSDP: tol must be positive");
  if (std::isnan(options.stop_above)) throw std::invalid_argument("LipSDP: stop_above must not be NaN");
  std::vector<double> log_sigma;
  const std::vector<Reduced> parts = reduce(problem, log_sigma);
  LipSdpOptions path_options = options;  // stop_above in the solver's scaling of rho
  path_options.stop_above *= std::exp(-2 * log_sigma.back());
  const std::vector<int> group_layer = group_layers(problem);
  LipSdpResult result;

  // Few of many LMIs are tight at the optimum (4 of a convolution's 421 frequencies on GLipSDP's
  // MNIST CNN C3-CH8), and with all of them the barrier's steps grew with the sum of their sizes
  // (318 steps there, 4.7 s; 0.3 s this way). So the path is followed for part 0 alone, then again
  // with the LMIs its end point violates first added, until the end point satisfies all (with a
  // margin): the subset's optimum is a lower bound on the whole problem's, and a point feasible for
  // all that attains it is optimal. The proof below covers every LMI either way.
  std::vector<char> active(parts.size(), 0);
  active[0] = 1;
  const VectorXd everywhere_feasible = parts.size() > 1 ? feasible_start(parts, group_layer) : VectorXd();
  Path path;
  int steps = 0, rounds = 0;
  for (;;) {
    std::vector<Reduced> subset;
    for (size_t f = 0; f < parts.size(); ++f)
      if (active[f]) subset.push_back(parts[f]);
    const Barrier barrier(subset, problem.multipliers);
    auto start = [&](double margin) {
      VectorXd y = feasible_start(subset, group_layer, margin);
      // Rounding in the start's construction: inflate every variable until strictly feasible.
      for (int i = 0; i < 60 && !std::isfinite(barrier.value(y, 1.0)); ++i) y *= 2;
      return y;
    };
    const VectorXd y = start(kBarrierStartMargin);
    // Start with the objective's weight t rho a tenth of the barrier's nu, i.e. centre near the start
    // and let the predictor follow the path (measured on the LipSDP and GLipSDP MNIST models: deep
    // networks centre far slower from t rho = 1 or 10 nu).
    const double t = 0.1 * barrier.nu() / std::max(y(0), 1e-300);
    if (subset.size() == 1 && subset[0].identity_groups && std::isinf(options.stop_above) &&
        options.primal_dual.value_or(subset[0].l >= kLipSdpPrimalDualFromLayers)) {
      path = lipsdp::primal_dual_path(subset[0], start(kPrimalDualStartMargin), path_options);
      result.primal_dual_steps += path.steps;
      result.chain_steps += path.chain_steps;
      if (path.status != "optimal") {
        steps += path.steps;
        path = follow_path(barrier, y, t, path_options);
      }
    } else {
      path = follow_path(barrier, y, t, path_options);
    }
    steps += path.steps;
    // A subset's optimum is a lower bound on the whole problem's: above for it, above for all.
    if (path.status == "above") break;
    const std::vector<char> added = first_violated(parts, active, everywhere_feasible, path.points.back());
    if (std::find(added.begin(), added.end(), 1) == added.end()) break;
    if (++rounds == kMaxRounds) {
      path.status = "max_rounds";
      break;
    }
    for (size_t f = 0; f < parts.size(); ++f) active[f] |= added[f];
  }
  result.status = path.status;
  result.relative_gap = path.relative_gap;
  result.newton_steps = steps;
  // The proof needs M strictly definite; near the boundary its rounding margins cost more than the
  // last steps gained, so the last three points are all tried and the best proved bound kept.
  auto prove = [&](const VectorXd& point) {
    const VectorXd p = original_scale(log_sigma, group_layer, point);
    const double bound = lipsdp_certified_bound(problem, p.tail(problem.multipliers));
    if (bound < result.certified_upper || result.multipliers.size() == 0) {
      result.multipliers = p.tail(problem.multipliers);
      result.rho = p(0);
      result.certified_upper = bound;
    }
    return bound;
  };
  const std::vector<VectorXd>& points = path.points;
  double earliest = kInf;  // the bound proved at the earliest point tried
  for (size_t back = 0; back < std::min<size_t>(points.size(), 3); ++back) earliest = prove(points[points.size() - 1 - back]);
  if (!std::isfinite(result.certified_upper) && result.multipliers.size() > 0) {
    // Where the layers decouple (slopes symmetric about 0, as MaxMin's rotated form), every hidden
    // block is tight at the optimum, and the last points can sit closer to the boundary than the
    // proof's rounding margins. lambda_k (1 + d)^(l + 1 - k) adds d T_k to each such block's slack
    // for a factor of about (1 + d)^((l + 1) / 2) on the bound; only what the proof accepts is kept.
    const VectorXd solved = result.multipliers;
    const int l = parts[0].l;
    for (double d : {1e-9, 1e-7, 1e-5, 1e-3}) {
      VectorXd inflated = solved;
      for (int g = 0; g < problem.multipliers; ++g) inflated(g) *= std::pow(1 + d, l + 1 - group_layer[g]);
      const double bound = lipsdp_certified_bound(problem, inflated);
      if (std::isfinite(bound)) {
        result.multipliers = inflated;
        result.certified_upper = bound;
        break;
      }
    }
  }
  // A path that ends too near the boundary (a tol out of its reach, or a stall) can lose more to the
  // proofs of its last points than they gained: then points ever further back (4, 6, 10, 18, ...
  // steps) are tried too, for as long as the earliest tried proves the best bound (to within tol, or
  // the rounding between points that close) or none. Measured on random ReLU MLPs: at tol 1e-12, 30 x
  // 10's last three points proved 5e-4 above what tol 1e-7 gave, 4 steps back 1e-10 below it; 20 x
  // 20's earliest of the three proved nothing and the best 8e-9 above, 4 steps back 3e-10 below.
  const double same = std::max(options.tol, 1e-9);
  for (size_t back = 4, stride = 2;
       back < points.size() && !(std::isfinite(earliest) && earliest > result.certified_upper * (1 + same));
       back += stride, stride *= 2)
    earliest = prove(points[points.size() - 1 - back]);
  return result;
}

LipSdpResult solve_lipsdp(const SlopeRestrictedNetwork& net, const LipSdpOptions& options) {
  net.validate();
  const SharedLipSdp problem = single_lmi(net, options.multipliers);
  LipSdpResult result = solve_lipsdp(problem, options);
  if (result.multipliers.size() > 0) result.multipliers = problem.neuron_multipliers(0, result.multipliers);
  return result;
}

}  // namespace lipcert
