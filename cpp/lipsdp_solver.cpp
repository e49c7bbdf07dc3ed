// Log-barrier Newton method for LipSDP, block by block.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "lipcert/lipsdp.hpp"
#include "lipsdp_blocks.hpp"
#include "parallel_cholesky.hpp"

namespace lipcert {

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using lipsdp::BlockTridiagonal;
using lipsdp::Elimination;
using lipsdp::eliminate;
using lipsdp::EliminationOutput;
using lipsdp::LayerSlopes;

constexpr double kInf = std::numeric_limits<double>::infinity();

// One LMI the solver works on: W_0 replaced by R' when W_0' = Q R is tall (x enters the LMI only
// through W_0 x and |x|^2, and the part of x orthogonal to W_0's rows only adds rho |x_perp|^2 >= 0),
// and W_l by its R factor when it has more rows than columns (only W_l' W_l enters). Each W_k is then
// divided by s_k ~ ||W_k||_2 (the largest over the LMIs, which share the multipliers): the quadratic
// constraints are homogeneous in (v_k, z_k), so the scaled problem is the original one with
// rho = rho' sigma_{l+1}^2 and lambda_j = lambda'_j (sigma_{l+1} / sigma_k)^2 for neurons of layer k,
// sigma_k = s_0 ... s_{k-1}; deep networks stay well scaled.
struct Reduced {
  std::vector<MatrixXd> w;
  std::vector<LayerSlopes> slopes;
  std::vector<int> block_offset;       // where block k (0 = input) starts among the D coordinates
  std::vector<int> multiplier_offset;  // where hidden layer k's multipliers start (k = 1..l)
  std::vector<int> group;              // each neuron's multiplier (variable group(i) + 1 of the barrier)
  bool identity_groups = false;        // group(i) == i: the Newton system is the neurons' own
  int l = 0, n_multipliers = 0, dimension = 0;
  int block_size(int k) const { return static_cast<int>(w[k].cols()); }
};

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

// X = M^-1 from the elimination: X_00 = Sigma_0^-1, X_{k,j} = F_k X_{k-1,j}, X_kk = Sigma_k^-1 + X_{k,k-1} F_k'.
// Only the blocks on and below the diagonal are written: mirroring the rest took 38 ms of a 450 ms
// Newton step on GLipSDP's MNIST W64 with 64 weights, and its readers take X_{j,k} = X_{k,j}' instead.
void lower_block_inverse(const Reduced& r, const Elimination& e, MatrixXd& x) {
  x.resize(r.dimension, r.dimension);
  const int n0 = r.block_size(0);
  x.topLeftCorner(n0, n0) = e.sigma[0].inverse();
  for (int k = 1; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k), prev = r.block_offset[k - 1], np = r.block_size(k - 1);
    x.block(o, 0, n, o).noalias() = e.f[k] * x.block(prev, 0, np, o);
    x.block(o, o, n, n) = e.sigma[k].inverse();
    x.block(o, o, n, n).noalias() += x.block(o, prev, n, np) * e.f[k].transpose();
  }
}

// LMI r's M at y = (rho, one multiplier per group).
lipsdp::BlockTridiagonal lmi_at(const Reduced& r, const VectorXd& y) {
  const auto shared = y.tail(y.size() - 1);
  return lipsdp::assemble(r.w, r.slopes, r.identity_groups ? VectorXd(shared) : lipsdp::group_values(r.group, shared), y(0));
}

// The barrier's Newton system in y = (rho, one multiplier per group): gradient and Hessian of
// t rho - sum log det M - log barrier. Only the Hessian's lower triangle is formed (and read).
struct NewtonSystem {
  VectorXd gradient;
  MatrixXd hessian;
};

// Buffers of one LMI's share of a Newton system, kept from step to step: fresh matrices of this size
// cost a page fault per page (measured: 7% of a solve on GLipSDP's MNIST W64 with 16 weights).
struct Workspace {
  MatrixXd x, xw, pww, rw, h;
  VectorXd trace_xa, cross_rho;
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
    std::vector<double> logdet(parts_.size(), 0.0);
    lipsdp::for_each_index(static_cast<int>(parts_.size()), by_part(parts_.size()), [&](int f) {
      const Reduced& r = parts_[f];
      const Elimination e = eliminate(lmi_at(r, y), EliminationOutput::LogDet);
      logdet[f] = e.ok ? e.logdet : kInf;
    });
    double sum = 0.0;
    for (double v : logdet) sum += v;
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
  // LMI r's share of the Newton system, added into s; its neurons' quantities go through ws.
  void add_part(const Reduced& r, const VectorXd& y, NewtonSystem& s, Workspace& ws) const;

  const std::vector<Reduced>& parts_;
  int groups_;
  int variables_;
  double nu_;
  mutable std::vector<Workspace> ws_;
  mutable std::vector<NewtonSystem> partial_;
};

void Barrier::newton_system(const VectorXd& y, double t, NewtonSystem& s) const {
  s.gradient.setZero(variables_);
  s.hessian.resize(variables_, variables_);
  // One LMI with a multiplier per neuron writes (not adds) every lambda entry of the lower triangle,
  // so only rho's column needs zeroing: zeroing all of it cost 2% of a step on GLipSDP's MNIST W64.
  if (parts_.size() == 1 && parts_[0].identity_groups) s.hessian.col(0).setZero();
  else s.hessian.setZero();
  const int n = static_cast<int>(parts_.size());
  if (!by_part(parts_.size())) {
    ws_.resize(1);
    for (const Reduced& r : parts_) add_part(r, y, s, ws_[0]);
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
      add_part(parts_[f], y, partial_[me], ws_[me]);
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

// The products of a lower-stored symmetric X = M^-1 (or another matrix on M's blocks) that the Newton
// systems read: X W (column i is X w_i), P_ww = W'XW (blocks on and below the diagonal) and W'X's
// input columns R_w.
void fill_products(const Reduced& r, const MatrixXd& x, Workspace& ws) {
  const int l = r.l, big_n = r.n_multipliers, n0 = r.block_size(0);
  const auto& mo = r.multiplier_offset;
  auto width = [&](int k) { return mo[k + 1] - mo[k]; };
  MatrixXd& xw = ws.xw;
  xw.resize(r.dimension, big_n);
  for (int k = 1; k <= l; ++k) {
    // X's column block k-1: its rows above block k-1 are the transposed row block, the rest is stored.
    const int o = r.block_offset[k - 1], n = r.block_size(k - 1);
    const auto wt = r.w[k - 1].transpose();
    xw.block(0, mo[k], o, width(k)).noalias() = x.block(o, 0, n, o).transpose() * wt;
    xw.block(o, mo[k], r.dimension - o, width(k)).noalias() = x.block(o, o, r.dimension - o, n) * wt;
  }
  MatrixXd &pww = ws.pww, &rw = ws.rw;
  pww.resize(big_n, big_n);
  rw.resize(big_n, n0);
  for (int k = 1; k <= l; ++k) {
    // Only the blocks on and below the diagonal are read.
    pww.block(mo[k], 0, width(k), mo[k + 1]).noalias() =
        r.w[k - 1] * xw.block(r.block_offset[k - 1], 0, r.block_size(k - 1), mo[k + 1]);
    rw.middleRows(mo[k], width(k)).noalias() = r.w[k - 1] * x.block(r.block_offset[k - 1], 0, r.block_size(k - 1), n0);
  }
}

// With A_i = G_i S_k G_i', G_i = [e_i, w_i] (w_i = row i of W_{k-1}, placed in block k-1) and
// S_k = [[1, -c_k], [-c_k, a_k]]: tr(X A_i) and tr(X A_i X A_j) = tr(S_k B_ij S_k' B_ij'),
// B_ij = G_i' X G_j, whose entries are the matrices P_ee = E'XE, P_ew = E'XW, P_ww = W'XW. The
// lower triangle of s.hessian is added to.
void Barrier::add_part(const Reduced& r, const VectorXd& y, NewtonSystem& s, Workspace& ws) const {
  const int l = r.l, big_n = r.n_multipliers, n0 = r.block_size(0);
  const Elimination e = eliminate(lmi_at(r, y), EliminationOutput::InverseMaps);
  if (!e.ok) throw std::runtime_error("LipSDP: Newton system requested at an infeasible point");
  MatrixXd& x = ws.x;
  lower_block_inverse(r, e, x);
  const auto& mo = r.multiplier_offset;
  auto width = [&](int k) { return mo[k + 1] - mo[k]; };
  fill_products(r, x, ws);
  const auto pee = x.bottomRightCorner(big_n, big_n);
  const auto pew = ws.xw.bottomRows(big_n);
  const MatrixXd &pww = ws.pww, &rw = ws.rw;
  const auto re = x.bottomLeftCorner(big_n, n0);

  // Per-neuron quantities.
  VectorXd &trace_xa = ws.trace_xa, &cross_rho = ws.cross_rho;
  trace_xa.resize(big_n);
  cross_rho.resize(big_n);
  for (int k = 1; k <= l; ++k) {
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    for (int i = mo[k]; i < mo[k + 1]; ++i) {
      trace_xa(i) = pee(i, i) - 2 * c * pew(i, i) + a * pww(i, i);
      cross_rho(i) = re.row(i).squaredNorm() - 2 * c * re.row(i).dot(rw.row(i)) + a * rw.row(i).squaredNorm();
    }
  }
  // tr(S B S' B') expanded in the entries of B (S = [[1, -c], [-c, a]] on the left, [[1, -c2], [-c2, a2]]
  // on the right): one pass over each pair of layers, the lower triangle only (H is symmetric), a
  // row of layer blocks per thread. With identity groups (then the only LMI) it is written straight
  // into the Newton system.
  if (!r.identity_groups) ws.h.resize(big_n, big_n);
  auto h = r.identity_groups ? s.hessian.block(1, 1, big_n, big_n) : ws.h.block(0, 0, big_n, big_n);
#pragma omp parallel for schedule(dynamic) if (!omp_in_parallel())
  for (int k = 1; k <= l; ++k) {
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    for (int kk = 1; kk <= k; ++kk) {
      const double c2 = r.slopes[kk - 1].c, a2 = r.slopes[kk - 1].a;
      const int ri = mo[k], rn = width(k), ci = mo[kk], cn = width(kk);
      const auto bee = pee.block(ri, ci, rn, cn).array();
      const auto bew = pew.block(ri, ci, rn, cn).array();
      const auto bwe = pew.block(ci, ri, cn, rn).transpose().array();
      const auto bww = pww.block(ri, ci, rn, cn).array();
      const auto terms = bee * (bee - 2 * c * bwe - 2 * c2 * bew + 2 * c * c2 * bww) +
                         bew * (a2 * bew + 2 * c * c2 * bwe - 2 * a2 * c * bww) +
                         bwe * (a * bwe - 2 * a * c2 * bww) + (a * a2) * bww * bww;
      h.block(ri, ci, rn, cn) = terms.matrix();
    }
  }

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
  lipsdp::for_each_index(static_cast<int>(parts_.size()), by_part(parts_.size()), [&](int f) {
    const Reduced& r = parts_[f];
    const Elimination e = eliminate(lmi_at(r, y), EliminationOutput::InputSchur);
    if (e.input_schur.size() == 0 || !e.input_schur.allFinite()) return;
    MatrixXd c = e.input_schur;
    c.diagonal().array() -= y(0);
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

// Solves H step = -g with H scaled to unit diagonal first: rho and the multipliers of different layers
// live on very different scales, and unscaled the factorisation loses the step's accuracy. The
// factorisation is kept for the predictor's tangent, which solves with the same H.
//
// Large systems are factorised in single precision (1.5x faster here) and the solve is then refined to
// double precision by conjugate gradients preconditioned with that factor (the factorisation was most
// of a step on GLipSDP's MNIST W64 with 64 weights). Where the single factor fails or the refinement
// stalls (H too ill-conditioned for it), H is factorised in double precision. The step's
// accuracy only affects how the path is followed: the bound is proved afterwards.
class NewtonSolver {
 public:
  explicit NewtonSolver(Eigen::Index single_precision_from) : single_precision_from_(single_precision_from) {}

  // `hessian` (its lower triangle) must stay unchanged while solve() is called: the refinement's
  // residuals are taken against it rather than a scaled double copy (making that copy took 16 of the
  // 200 ms of a factorisation on GLipSDP's MNIST W64 with 64 weights).
  void factorize(const MatrixXd& hessian) {
    hessian_ = &hessian;
    const Eigen::Index n = hessian.rows();
    d_ = hessian.diagonal().cwiseMax(std::numeric_limits<double>::min()).cwiseSqrt().cwiseInverse();
    factored_in_double_ = false;
    single_ok_ = n >= single_precision_from_;
    if (single_ok_) {
      write_scaled(single_.matrix());
      single_ok_ = single_.factorize();
    }
    if (!single_ok_) factorize_in_double();
  }
  // H^-1 rhs.
  VectorXd solve(const VectorXd& rhs) {
    const VectorXd b = d_.cwiseProduct(rhs);
    VectorXd x;
    if (!(single_ok_ && refined_solve(b, x))) {
      if (!factored_in_double_) factorize_in_double();
      x = use_ldlt_ ? ldlt_.solve(b) : double_.solve(b);
    }
    return d_.cwiseProduct(x);
  }

 private:
  static constexpr int kRefinementSteps = 30;
  static constexpr double kRefinedResidual = 1e-11;

  void factorize_in_double() {
    write_scaled(double_.matrix());
    use_ldlt_ = !double_.factorize();
    if (use_ldlt_) {
      MatrixXd scaled;
      write_scaled(scaled);
      ldlt_.compute(scaled.selfadjointView<Eigen::Lower>());
    }
    factored_in_double_ = true;
  }
  // The lower triangle of D H D into out, column by column over the threads.
  template <typename Scalar>
  void write_scaled(DenseMatrix<Scalar>& out) const {
    const Eigen::Index n = hessian_->rows();
    out.resize(n, n);
#pragma omp parallel for schedule(dynamic, 32) if (n >= 512)
    for (Eigen::Index j = 0; j < n; ++j)
      out.col(j).tail(n - j) = (d_(j) * d_.tail(n - j).cwiseProduct(hessian_->col(j).tail(n - j))).template cast<Scalar>();
  }
  // (D H D) v.
  VectorXd scaled_product(const VectorXd& v) const {
    return d_.cwiseProduct(hessian_->selfadjointView<Eigen::Lower>() * d_.cwiseProduct(v));
  }
  VectorXd preconditioned(const VectorXd& r) const { return single_.solve(r.cast<float>()).cast<double>(); }
  // Conjugate gradients on the scaled system from the single-precision solve; false if it stalls.
  bool refined_solve(const VectorXd& b, VectorXd& x) const {
    const double target = kRefinedResidual * b.norm();
    x = preconditioned(b);
    VectorXd r = b - scaled_product(x);
    VectorXd z = preconditioned(r), p = z;
    double rz = r.dot(z);
    for (int i = 0; i < kRefinementSteps && r.norm() > target; ++i) {
      const VectorXd ap = scaled_product(p);
      const double curvature = p.dot(ap);
      if (!(curvature > 0)) return false;
      const double alpha = rz / curvature;
      x += alpha * p;
      r -= alpha * ap;
      z = preconditioned(r);
      const double rz_next = r.dot(z);
      p = z + (rz_next / rz) * p;
      rz = rz_next;
    }
    return r.norm() <= target && x.allFinite();
  }

  Eigen::Index single_precision_from_;
  const MatrixXd* hessian_ = nullptr;  // H, lower triangle
  VectorXd d_;                          // H's diagonal^-1/2
  BasicParallelCholesky<float> single_;
  ParallelCholesky double_;
  Eigen::LDLT<MatrixXd> ldlt_;
  bool single_ok_ = false, use_ldlt_ = false, factored_in_double_ = false;
};

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

// A strictly feasible start with one multiplier per layer: from the output backwards, t_k is twice
// what keeps every LMI's backward Schur complement Sigma_k = t_k I + Q_k definite, and rho likewise.
VectorXd feasible_start(const std::vector<Reduced>& parts, const std::vector<int>& group_layer) {
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
    // Twice the need: closer starts (measured: 2^(1/l)) sit near the boundary and centre far slower.
    const double value = need > 0 ? 2 * need : scale;
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

struct Path {
  // The centred points, then the last point where that was not centred: the proof's candidates,
  // most recent last.
  std::vector<VectorXd> points;
  int steps = 0;
  double relative_gap = 0.0;
  std::string status = "max_steps";
};

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

// Mehrotra's primal-dual method for one LMI with a multiplier per neuron (LipSDP-Neuron's own
// problem). The barrier method above needs 3-7x more Newton systems than a primal-dual method on it:
// most of its steps centre the path (measured against a dense prototype of this method: 46 / 59 / 103
// against 14 / 16 / 26 on GLipSDP's MNIST W64 with 8 / 16 / 32 weights; Clarabel took 14-20 on random
// 3-20-layer MLPs where the barrier took 35-69).
//
// The primal variable X only enters through its entries on M's block-tridiagonal pattern E (every A_j
// and C lie there), so X is held on E, kept completable (every 2-block clique definite), and used
// through its maximum-determinant completion Xh, whose inverse lies on E: the chordal primal-dual
// method of Fukuda, Kojima, Murota and Nakata (SDPA-C). Its Newton system over y = (rho, lambda) has
// the same shape as the barrier's: B_ij = tr(A_i Xh A_j M^-1) (the HKM direction).
//
// The dual stays feasible throughout (M(y) definite, lambda > 0), so every point it passes can be
// proved by lipsdp_certified_bound; the primal may start infeasible.

// Matrices on E as blocks: X, its steps, and the second-order term.
using Banded = BlockTridiagonal;

// The blocks on E of a dense symmetric matrix stored in (at least) its lower block triangle.
Banded on_pattern(const Reduced& r, const MatrixXd& lower) {
  Banded b;
  b.diag.resize(r.l + 1);
  b.sub.resize(r.l + 1);
  for (int k = 0; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k);
    b.diag[k] = lower.block(o, o, n, n);
    if (k > 0) b.sub[k] = lower.block(o, r.block_offset[k - 1], n, r.block_size(k - 1));
  }
  return b;
}

// The blocks on E of (U + U') / 2 for a dense U.
Banded symmetric_part_on_pattern(const Reduced& r, const MatrixXd& u) {
  Banded b;
  b.diag.resize(r.l + 1);
  b.sub.resize(r.l + 1);
  for (int k = 0; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k);
    b.diag[k] = 0.5 * (u.block(o, o, n, n) + u.block(o, o, n, n).transpose());
    if (k > 0) {
      const int op = r.block_offset[k - 1], np = r.block_size(k - 1);
      b.sub[k] = 0.5 * (u.block(o, op, n, np) + u.block(op, o, np, n).transpose());
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
// fill_products leaves them): row block k is dLambda_k (M^-1)_k - c dLambda_k (W_{k-1} M^-1) +
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
// then x_0 = Sigma_0^-1 c_0, x_k = Sigma_k^-1 c_k + F_k x_{k-1}.
void solve_in_place(const Reduced& r, const Elimination& e, MatrixXd& b, MatrixXd& scratch) {
  for (int k = r.l - 1; k >= 0; --k)
    b.middleRows(r.block_offset[k], r.block_size(k)).noalias() +=
        e.f[k + 1].transpose() * b.middleRows(r.block_offset[k + 1], r.block_size(k + 1));
  for (int k = 0; k <= r.l; ++k) {
    auto rows = b.middleRows(r.block_offset[k], r.block_size(k));
    scratch = rows;
    e.sigma[k].solve_lower_in_place(scratch);
    e.sigma[k].solve_upper_in_place(scratch);
    if (k > 0) scratch.noalias() += e.f[k] * b.middleRows(r.block_offset[k - 1], r.block_size(k - 1));
    rows = scratch;
  }
}

// Xh^-1 for X on E (Xh its maximum-determinant completion): the sum over the cliques (blocks k-1, k)
// of their inverses, less the separators' (blocks 1..l-1). False if a clique is not definite (X is
// then not completable).
bool completion_inverse(const Reduced& r, const Banded& x, Banded& out) {
  out.diag.resize(r.l + 1);
  out.sub.resize(r.l + 1);
  for (int k = 0; k <= r.l; ++k) out.diag[k] = MatrixXd::Zero(r.block_size(k), r.block_size(k));
  for (int k = 1; k <= r.l; ++k) {
    const int np = r.block_size(k - 1), n = r.block_size(k);
    MatrixXd clique(np + n, np + n);
    clique.topLeftCorner(np, np) = x.diag[k - 1];
    clique.bottomLeftCorner(n, np) = x.sub[k];
    clique.topRightCorner(np, n) = x.sub[k].transpose();
    clique.bottomRightCorner(n, n) = x.diag[k];
    const Eigen::LLT<MatrixXd> llt(clique);
    if (llt.info() != Eigen::Success) return false;
    const MatrixXd inverse = llt.solve(MatrixXd::Identity(np + n, np + n));
    out.diag[k - 1] += inverse.topLeftCorner(np, np);
    out.sub[k] = inverse.bottomLeftCorner(n, np);
    out.diag[k] += inverse.bottomRightCorner(n, n);
    if (k < r.l) {
      const Eigen::LLT<MatrixXd> separator(x.diag[k]);
      if (separator.info() != Eigen::Success) return false;
      out.diag[k] -= separator.solve(MatrixXd::Identity(n, n));
    }
  }
  return true;
}

// The largest a <= 1 (or +inf) with every clique of X + a dX definite, X's cliques definite.
double clique_step(const Reduced& r, const Banded& x, const Banded& dx) {
  std::vector<double> steps(r.l + 1, kInf);
#pragma omp parallel for schedule(dynamic)
  for (int k = 1; k <= r.l; ++k) {
    const int np = r.block_size(k - 1), n = r.block_size(k);
    MatrixXd c(np + n, np + n), d(np + n, np + n);
    c.topLeftCorner(np, np) = x.diag[k - 1];
    c.bottomLeftCorner(n, np) = x.sub[k];
    c.topRightCorner(np, n) = x.sub[k].transpose();
    c.bottomRightCorner(n, n) = x.diag[k];
    d.topLeftCorner(np, np) = dx.diag[k - 1];
    d.bottomLeftCorner(n, np) = dx.sub[k];
    d.topRightCorner(np, n) = dx.sub[k].transpose();
    d.bottomRightCorner(n, n) = dx.diag[k];
    const Eigen::LLT<MatrixXd> llt(c);
    MatrixXd t = llt.matrixL().solve(d);
    t = llt.matrixL().solve(t.transpose()).eval();
    const double least = Eigen::SelfAdjointEigenSolver<MatrixXd>(0.5 * (t + t.transpose()), Eigen::EigenvaluesOnly).eigenvalues()(0);
    if (least < 0) steps[k] = -1 / least;
  }
  return *std::min_element(steps.begin(), steps.end());
}

// The largest a with v + a dv > 0 (+inf if dv >= 0).
double ratio_step(const VectorXd& v, const VectorXd& dv) {
  double step = kInf;
  for (Eigen::Index i = 0; i < v.size(); ++i)
    if (dv(i) < 0) step = std::min(step, -v(i) / dv(i));
  return step;
}

// Nearly the largest a <= cap with M(y + a dy) definite (to 7% by bisection; M(y) is definite).
double lmi_step(const Reduced& r, const VectorXd& y, const VectorXd& dy, double cap) {
  auto feasible = [&](double a) { return eliminate(lmi_at(r, y + a * dy), EliminationOutput::LogDet).ok; };
  if (feasible(cap)) return cap;
  double hi = cap, lo = cap;
  do {
    hi = lo;
    lo *= 0.5;
  } while (lo > 1e-14 * cap && !feasible(lo));
  if (lo <= 1e-14 * cap) return 0.0;
  for (int i = 0; i < 4; ++i) {
    const double mid = 0.5 * (lo + hi);
    (feasible(mid) ? lo : hi) = mid;
  }
  return lo;
}

// B_ij = tr(A_i Xh A_j M^-1), the HKM direction's Newton system (lower triangle): with
// P_ij = G_i' Xh G_j and Q_ij = G_i' M^-1 G_j (as in Barrier::add_part), tr(S_i P_ij S_j Q_ij').
void hkm_matrix(const Reduced& r, const MatrixXd& xh, const MatrixXd& si, MatrixXd& b, Workspace& wx, Workspace& ws) {
  const int l = r.l, big_n = r.n_multipliers, n0 = r.block_size(0);
  fill_products(r, xh, wx);
  fill_products(r, si, ws);
  b.resize(1 + big_n, 1 + big_n);
  const auto& mo = r.multiplier_offset;
  auto width = [&](int k) { return mo[k + 1] - mo[k]; };
  const auto pee = xh.bottomRightCorner(big_n, big_n), qee = si.bottomRightCorner(big_n, big_n);
  const auto pew = wx.xw.bottomRows(big_n), qew = ws.xw.bottomRows(big_n);
  auto h = b.block(1, 1, big_n, big_n);
#pragma omp parallel for schedule(dynamic)
  for (int k = 1; k <= l; ++k) {
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    for (int kk = 1; kk <= k; ++kk) {
      const double c2 = r.slopes[kk - 1].c, a2 = r.slopes[kk - 1].a;
      const int ri = mo[k], rn = width(k), ci = mo[kk], cn = width(kk);
      const Eigen::ArrayXXd p_ee = pee.block(ri, ci, rn, cn), p_ew = pew.block(ri, ci, rn, cn),
                            p_we = pew.block(ci, ri, cn, rn).transpose(), p_ww = wx.pww.block(ri, ci, rn, cn);
      // L = S_i P, then T = L S_j.
      const Eigen::ArrayXXd l_ee = p_ee - c * p_we, l_ew = p_ew - c * p_ww, l_we = a * p_we - c * p_ee,
                            l_ww = a * p_ww - c * p_ew;
      h.block(ri, ci, rn, cn) = ((l_ee - c2 * l_ew) * qee.block(ri, ci, rn, cn).array() +
                                 (a2 * l_ew - c2 * l_ee) * qew.block(ri, ci, rn, cn).array() +
                                 (l_we - c2 * l_ww) * qew.block(ci, ri, cn, rn).transpose().array() +
                                 (a2 * l_ww - c2 * l_we) * ws.pww.block(ri, ci, rn, cn).array())
                                    .matrix();
    }
  }
  b(0, 0) = xh.topLeftCorner(n0, n0).cwiseProduct(si.topLeftCorner(n0, n0)).sum();
  const auto pe = xh.bottomLeftCorner(big_n, n0), qe = si.bottomLeftCorner(big_n, n0);
  for (int k = 1; k <= l; ++k) {
    const double c = r.slopes[k - 1].c, a = r.slopes[k - 1].a;
    for (int i = mo[k]; i < mo[k + 1]; ++i)
      b(1 + i, 0) = pe.row(i).dot(qe.row(i)) - c * (wx.rw.row(i).dot(qe.row(i)) + pe.row(i).dot(ws.rw.row(i))) +
                    a * wx.rw.row(i).dot(ws.rw.row(i));
  }
}

// The fraction of the way to the boundary each step takes (measured on the prototype: 0.9 took 13 / 17
// / 23 iterations on random 3 / 10 / 20-layer MLPs, 0.98 took 13 / 23 / 39).
constexpr double kStepToBoundary = 0.9;
constexpr int kMaxPrimalDualSteps = 100;

struct PrimalDualStep {
  VectorXd dy, dz;
  Banded ds, dx;
  MatrixXd t, u;  // dS M^-1 and Xh dS M^-1 (u: the predictor's only)
};

Path primal_dual_path(const Reduced& r, VectorXd y, const LipSdpOptions& options) {
  const int n = r.n_multipliers;
  const double nu = r.dimension + n;
  Path path;
  path.status = "max_steps";
  Elimination es = eliminate(lmi_at(r, y), EliminationOutput::InverseMaps);
  if (!es.ok) {
    path.status = "stalled";
    return path;
  }
  MatrixXd si, xh;  // M^-1 and Xh, dense
  lower_block_inverse(r, es, si);
  // Start on the central path's complementarity (X = mu M^-1 on E, z = mu / lambda), with X's trace
  // on the input block what the primal's rho row asks (1).
  const double mu0 = 1.0 / si.topLeftCorner(r.block_size(0), r.block_size(0)).trace();
  Banded x = scaled(on_pattern(r, si), mu0);
  VectorXd z = mu0 * y.tail(n).cwiseInverse();
  NewtonSolver solver(options.single_precision_newton_from);
  MatrixXd b, scratch;
  Workspace wx, ws;
  // Kept from step to step: fresh dense matrices of this size cost a page fault per page.
  PrimalDualStep affine, corrector;
  for (;;) {
    path.points.push_back(y);
    const VectorXd lambda = y.tail(n);
    const Banded m = lmi_at(r, y);
    const double mu = (pattern_dot(x, m) + z.dot(lambda)) / nu;
    path.relative_gap = mu * nu / y(0);
    if (path.relative_gap <= options.tol) {
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
    hkm_matrix(r, xh, si, b, wx, ws);
    b.diagonal().tail(n) += z.cwiseQuotient(lambda);
    ++path.steps;
    solver.factorize(b);
    mirror_blocks(r, si);
    mirror_blocks(r, xh);
    const Banded si_e = on_pattern(r, si);
    const VectorXd a_si = adjoint_map(r, si_e);

    // The Newton step towards X M = mu_t I, z lambda = mu_t, less the second-order term (K, kz). With
    // T = dS M^-1 and U = Xh T, dX = mu_t M^-1 - X - (U + U')/2 - K on E. The predictor keeps T and a
    // dense U (by block solves with Xh^-1), which its second-order term needs; the corrector only
    // needs U on E.
    auto direction = [&](PrimalDualStep& d, double mu_t, const Banded* k, const VectorXd* kz, bool keep_dense_u) {
      VectorXd rhs = mu_t * a_si;
      if (k) rhs -= adjoint_map(r, *k);
      rhs.tail(n) += mu_t * lambda.cwiseInverse();
      if (kz) rhs.tail(n) -= *kz;
      rhs(0) -= 1.0;
      d.dy = solver.solve(rhs);
      d.ds = lmi_change(r, d.dy);
      change_times_inverse(r, d.dy, si, ws.xw, d.t);
      Banded u_sym;
      if (keep_dense_u) {
        d.u = d.t;
        solve_in_place(r, ek, d.u, scratch);
        u_sym = symmetric_part_on_pattern(r, d.u);
      } else {
        u_sym = symmetric_product_on_pattern(r, [&](int q) { return xh.middleRows(r.block_offset[q], r.block_size(q)); }, d.t);
      }
      d.dx = plus(plus(scaled(si_e, mu_t), -1.0, x), -1.0, u_sym);
      if (k) d.dx = plus(d.dx, -1.0, *k);
      d.dz = mu_t * lambda.cwiseInverse() - z - z.cwiseQuotient(lambda).cwiseProduct(d.dy.tail(n));
      if (kz) d.dz -= *kz;
    };
    auto step_lengths = [&](const PrimalDualStep& d, double cap, double& ap, double& ad) {
      ap = std::min({cap, ratio_step(z, d.dz), clique_step(r, x, d.dx)});
      ad = lmi_step(r, y, d.dy, std::min(cap, ratio_step(lambda, d.dy.tail(n))));
    };

    direction(affine, 0.0, nullptr, nullptr, true);
    double ap, ad;
    step_lengths(affine, 1.0, ap, ad);
    const double mu_affine =
        (pattern_dot(plus(x, ap, affine.dx), plus(m, ad, affine.ds)) + (z + ap * affine.dz).dot(lambda + ad * affine.dy.tail(n))) / nu;
    const double sigma = std::min(1.0, std::pow(mu_affine / mu, 3));
    // Second-order term: K = dX dS M^-1 with the predictor's dX = -Xh - (U + U')/2, i.e.
    // K = -U - (U T + T' U) / 2, its symmetric part on E; kz = dz dlambda / lambda.
    const Banded ut = symmetric_product_on_pattern(
        r, [&](int q) { return affine.u.middleRows(r.block_offset[q], r.block_size(q)); }, affine.t);
    const Banded tu = symmetric_product_on_pattern(
        r, [&](int q) { return affine.t.middleCols(r.block_offset[q], r.block_size(q)).transpose(); }, affine.u);
    const Banded k = plus(plus(scaled(symmetric_part_on_pattern(r, affine.u), -1.0), -0.5, ut), -0.5, tu);
    const VectorXd kz = affine.dz.cwiseProduct(affine.dy.tail(n)).cwiseQuotient(lambda);
    PrimalDualStep& d = corrector;
    direction(d, sigma * mu, &k, &kz, false);
    step_lengths(d, 1.0 / kStepToBoundary, ap, ad);
    ap = std::min(1.0, kStepToBoundary * ap);
    ad = std::min(1.0, kStepToBoundary * ad);
    if (!(ad > 0)) {
      path.status = "stalled";
      break;
    }
    y += ad * d.dy;
    x = plus(x, ap, d.dx);
    z += ap * d.dz;
    es = eliminate(lmi_at(r, y), EliminationOutput::InverseMaps);
    if (!es.ok) {
      path.status = "stalled";
      break;
    }
    lower_block_inverse(r, es, si);
  }
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
    VectorXd y = feasible_start(subset, group_layer);
    if (!std::isfinite(barrier.value(y, 1.0))) {
      // Rounding in the start's construction: inflate every variable until strictly feasible.
      for (int i = 0; i < 60 && !std::isfinite(barrier.value(y, 1.0)); ++i) y *= 2;
    }
    // Start with the objective's weight t rho a tenth of the barrier's nu, i.e. centre near the start
    // and let the predictor follow the path (measured on the LipSDP and GLipSDP MNIST models: deep
    // networks centre far slower from t rho = 1 or 10 nu).
    const double t = 0.1 * barrier.nu() / std::max(y(0), 1e-300);
    if (subset.size() == 1 && subset[0].identity_groups && options.primal_dual && std::isinf(options.stop_above)) {
      path = primal_dual_path(subset[0], y, path_options);
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
  // last steps gained, so the last few points are all tried and the best proved bound kept.
  const std::vector<VectorXd>& points = path.points;
  const size_t tried = std::min<size_t>(points.size(), 3);
  for (size_t i = points.size() - tried; i < points.size(); ++i) {
    const VectorXd p = original_scale(log_sigma, group_layer, points[i]);
    const double bound = lipsdp_certified_bound(problem, p.tail(problem.multipliers));
    if (bound < result.certified_upper || result.multipliers.size() == 0) {
      result.multipliers = p.tail(problem.multipliers);
      result.rho = p(0);
      result.certified_upper = bound;
    }
  }
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
