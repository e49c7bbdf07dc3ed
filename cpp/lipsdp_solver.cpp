// Log-barrier Newton method for LipSDP, block by block.
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

// The problem the solver works on: W_0 replaced by R' when W_0' = Q R is tall (x enters the LMI only
// through W_0 x and |x|^2, and the part of x orthogonal to W_0's rows only adds rho |x_perp|^2 >= 0),
// and W_l by its R factor when it has more rows than columns (only W_l' W_l enters). Each W_k is then
// divided by s_k ~ ||W_k||_2: the quadratic constraints are homogeneous in (v_k, z_k), so the scaled
// problem is the original one with rho = rho' sigma_{l+1}^2 and lambda_j = lambda'_j (sigma_{l+1} /
// sigma_k)^2 for neurons of layer k, sigma_k = s_0 ... s_{k-1}; deep networks stay well scaled.
struct Reduced {
  std::vector<MatrixXd> w;
  std::vector<double> log_sigma;  // log sigma_k, k = 0..l+1
  std::vector<LayerSlopes> slopes;
  std::vector<int> block_offset;       // where block k (0 = input) starts among the D coordinates
  std::vector<int> multiplier_offset;  // where hidden layer k's multipliers start (k = 1..l)
  int l = 0, n_multipliers = 0, dimension = 0;
  int block_size(int k) const { return static_cast<int>(w[k].cols()); }
};

MatrixXd upper_r(const MatrixXd& tall) {
  Eigen::HouseholderQR<MatrixXd> qr(tall);
  return qr.matrixQR().topRows(tall.cols()).triangularView<Eigen::Upper>();
}

Reduced reduce(const SlopeRestrictedNetwork& net) {
  Reduced r;
  r.w = net.weights;
  r.slopes = lipsdp::layer_slopes(net);
  r.l = net.hidden_layers();
  if (r.w[0].cols() > r.w[0].rows()) r.w[0] = upper_r(r.w[0].transpose()).transpose();
  if (r.w[r.l].rows() > r.w[r.l].cols()) r.w[r.l] = upper_r(r.w[r.l]);
  r.log_sigma.assign(r.l + 2, 0.0);
  for (int k = 0; k <= r.l; ++k) {
    const double s = Eigen::BDCSVD<MatrixXd>(r.w[k]).singularValues()(0);
    const double scale = s > 0 && std::isfinite(s) ? s : 1.0;
    r.w[k] /= scale;
    r.log_sigma[k + 1] = r.log_sigma[k] + std::log(scale);
  }
  r.multiplier_offset = lipsdp::multiplier_offsets(r.w);
  r.n_multipliers = r.multiplier_offset[r.l + 1];
  r.block_offset.assign(r.l + 2, 0);
  for (int k = 0; k <= r.l; ++k) r.block_offset[k + 1] = r.block_offset[k] + r.block_size(k);
  r.dimension = r.block_offset[r.l + 1];
  return r;
}

// X = M^-1 from the elimination: X_00 = Sigma_0^-1, X_{k,j} = F_k X_{k-1,j}, X_kk = Sigma_k^-1 + X_{k,k-1} F_k'.
void inverse(const Reduced& r, const Elimination& e, MatrixXd& x) {
  x.resize(r.dimension, r.dimension);
  const int n0 = r.block_size(0);
  x.topLeftCorner(n0, n0) = e.sigma[0].inverse();
  for (int k = 1; k <= r.l; ++k) {
    const int o = r.block_offset[k], n = r.block_size(k), prev = r.block_offset[k - 1], np = r.block_size(k - 1);
    x.block(o, 0, n, o).noalias() = e.f[k] * x.block(prev, 0, np, o);
    x.block(o, o, n, n) = e.sigma[k].inverse();
    x.block(o, o, n, n).noalias() += x.block(o, prev, n, np) * e.f[k].transpose();
  }
  x.triangularView<Eigen::StrictlyUpper>() = x.transpose();
}

struct Point {
  double rho = 0.0;
  VectorXd lambda;
};

// The barrier's Newton system in the multipliers: gradient and Hessian of t rho - log det M - log barrier.
struct NewtonSystem {
  VectorXd gradient;
  MatrixXd hessian;
};

// Buffers of a Newton system's assembly, kept from step to step: fresh matrices of this size cost a
// page fault per page (measured: 7% of a solve on GLipSDP's MNIST W64 with 16 weights).
struct Workspace {
  MatrixXd x, xw, pww, rw, h;
};

class Barrier {
 public:
  Barrier(const Reduced& r, MultiplierKind kind) : r_(r), per_layer_(kind == MultiplierKind::PerLayer) {
    variables_ = 1 + (per_layer_ ? r.l : r.n_multipliers);
    nu_ = r.dimension + (per_layer_ ? r.l : r.n_multipliers);
  }
  int variables() const { return variables_; }
  double nu() const { return nu_; }

  // The barrier value at (rho, lambda) with parameter t, or +inf outside the feasible set.
  double value(const Point& p, double t) const {
    if (!(p.lambda.array() > 0).all()) return kInf;
    const Elimination e = eliminate(lipsdp::assemble(r_.w, r_.slopes, p.lambda, p.rho), EliminationOutput::LogDet);
    if (!e.ok) return kInf;
    return t * p.rho - e.logdet - multiplier_log_sum(p.lambda);
  }

  // The Newton system at (p, t), written into s (whose buffers are reused).
  void newton_system(const Point& p, double t, NewtonSystem& s) const;

  // y = (rho, one entry per variable multiplier) <-> Point.
  VectorXd pack(const Point& p) const {
    VectorXd y(variables_);
    y(0) = p.rho;
    if (per_layer_)
      for (int k = 1; k <= r_.l; ++k) y(k) = p.lambda(r_.multiplier_offset[k]);
    else
      y.tail(r_.n_multipliers) = p.lambda;
    return y;
  }
  Point unpack(const VectorXd& y) const {
    Point p;
    p.rho = y(0);
    if (!per_layer_) {
      p.lambda = y.tail(r_.n_multipliers);
      return p;
    }
    p.lambda.resize(r_.n_multipliers);
    for (int k = 1; k <= r_.l; ++k)
      p.lambda.segment(r_.multiplier_offset[k], r_.multiplier_offset[k + 1] - r_.multiplier_offset[k]).setConstant(y(k));
    return p;
  }

 private:
  double multiplier_log_sum(const VectorXd& lambda) const {
    if (!per_layer_) return lambda.array().log().sum();
    double s = 0.0;
    for (int k = 1; k <= r_.l; ++k) s += std::log(lambda(r_.multiplier_offset[k]));
    return s;
  }

  const Reduced& r_;
  bool per_layer_;
  int variables_;
  double nu_;
  mutable Workspace ws_;
};

// With A_i = G_i S_k G_i', G_i = [e_i, w_i] (w_i = row i of W_{k-1}, placed in block k-1) and
// S_k = [[1, -c_k], [-c_k, a_k]]: tr(X A_i) and tr(X A_i X A_j) = tr(S_k B_ij S_k' B_ij'),
// B_ij = G_i' X G_j, whose entries are the matrices P_ee = E'XE, P_ew = E'XW, P_ww = W'XW.
void Barrier::newton_system(const Point& p, double t, NewtonSystem& s) const {
  const int l = r_.l, big_n = r_.n_multipliers, n0 = r_.block_size(0);
  const Elimination e = eliminate(lipsdp::assemble(r_.w, r_.slopes, p.lambda, p.rho), EliminationOutput::InverseMaps);
  if (!e.ok) throw std::runtime_error("LipSDP: Newton system requested at an infeasible point");
  MatrixXd& x = ws_.x;
  inverse(r_, e, x);
  const auto& mo = r_.multiplier_offset;
  auto width = [&](int k) { return mo[k + 1] - mo[k]; };

  MatrixXd& xw = ws_.xw;  // X W: column i is X w_i
  xw.resize(r_.dimension, big_n);
  for (int k = 1; k <= l; ++k)
    xw.middleCols(mo[k], width(k)).noalias() =
        x.middleCols(r_.block_offset[k - 1], r_.block_size(k - 1)) * r_.w[k - 1].transpose();
  const auto pee = x.bottomRightCorner(big_n, big_n);
  const auto pew = xw.bottomRows(big_n);
  MatrixXd &pww = ws_.pww, &rw = ws_.rw;
  pww.resize(big_n, big_n);
  rw.resize(big_n, n0);
  for (int k = 1; k <= l; ++k) {
    // Only the blocks on and below the diagonal are read.
    pww.block(mo[k], 0, width(k), mo[k + 1]).noalias() =
        r_.w[k - 1] * xw.block(r_.block_offset[k - 1], 0, r_.block_size(k - 1), mo[k + 1]);
    rw.middleRows(mo[k], width(k)).noalias() = r_.w[k - 1] * x.block(r_.block_offset[k - 1], 0, r_.block_size(k - 1), n0);
  }
  const auto re = x.bottomLeftCorner(big_n, n0);

  // Per-neuron quantities.
  VectorXd trace_xa(big_n), cross_rho(big_n);
  for (int k = 1; k <= l; ++k) {
    const double c = r_.slopes[k - 1].c, a = r_.slopes[k - 1].a;
    for (int i = mo[k]; i < mo[k + 1]; ++i) {
      trace_xa(i) = pee(i, i) - 2 * c * pew(i, i) + a * pww(i, i);
      cross_rho(i) = re.row(i).squaredNorm() - 2 * c * re.row(i).dot(rw.row(i)) + a * rw.row(i).squaredNorm();
    }
  }
  // tr(S B S' B') expanded in the entries of B (S = [[1, -c], [-c, a]] on the left, [[1, -c2], [-c2, a2]]
  // on the right): one pass over each pair of layers, the lower triangle only (H is symmetric).
  s.gradient.resize(variables_);
  s.hessian.resize(variables_, variables_);
  if (per_layer_) ws_.h.resize(big_n, big_n);  // summed per pair of layers below
  auto h = per_layer_ ? ws_.h.block(0, 0, big_n, big_n) : s.hessian.block(1, 1, big_n, big_n);
  for (int k = 1; k <= l; ++k) {
    const double c = r_.slopes[k - 1].c, a = r_.slopes[k - 1].a;
    for (int kk = 1; kk <= k; ++kk) {
      const double c2 = r_.slopes[kk - 1].c, a2 = r_.slopes[kk - 1].a;
      const int ri = mo[k], rn = width(k), ci = mo[kk], cn = width(kk);
      const auto bee = pee.block(ri, ci, rn, cn).array();
      const auto bew = pew.block(ri, ci, rn, cn).array();
      const auto bwe = pew.block(ci, ri, cn, rn).transpose().array();
      const auto bww = pww.block(ri, ci, rn, cn).array();
      h.block(ri, ci, rn, cn) = (bee * (bee - 2 * c * bwe - 2 * c2 * bew + 2 * c * c2 * bww) +
                                 bew * (a2 * bew + 2 * c * c2 * bwe - 2 * a2 * c * bww) +
                                 bwe * (a * bwe - 2 * a * c2 * bww) + (a * a2) * bww * bww)
                                    .matrix();
    }
  }
  h.triangularView<Eigen::StrictlyUpper>() = h.transpose();

  s.gradient(0) = t - x.topLeftCorner(n0, n0).trace();
  s.hessian(0, 0) = x.topLeftCorner(n0, n0).squaredNorm();
  if (!per_layer_) {
    s.gradient.tail(big_n) = -trace_xa - p.lambda.cwiseInverse();
    s.hessian.bottomRightCorner(big_n, big_n).diagonal() += p.lambda.cwiseInverse().cwiseAbs2();
    s.hessian.block(1, 0, big_n, 1) = cross_rho;
    s.hessian.block(0, 1, 1, big_n) = cross_rho.transpose();
    return;
  }
  for (int k = 1; k <= l; ++k) {
    const double tk = p.lambda(mo[k]);
    s.gradient(k) = -trace_xa.segment(mo[k], width(k)).sum() - 1.0 / tk;
    s.hessian(k, 0) = s.hessian(0, k) = cross_rho.segment(mo[k], width(k)).sum();
    for (int kk = 1; kk <= l; ++kk) s.hessian(k, kk) = h.block(mo[k], mo[kk], width(k), width(kk)).sum();
    s.hessian(k, k) += 1.0 / (tk * tk);
  }
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

  void factorize(const MatrixXd& hessian) {
    const Eigen::Index n = hessian.rows();
    d_ = hessian.diagonal().cwiseMax(std::numeric_limits<double>::min()).cwiseSqrt().cwiseInverse();
    scaled_.resize(n, n);
    scaled_.triangularView<Eigen::Lower>() = d_.asDiagonal() * hessian * d_.asDiagonal();
    factored_in_double_ = false;
    single_ok_ = n >= single_precision_from_;
    if (single_ok_) {
      single_.matrix().resize(n, n);
      single_.matrix().triangularView<Eigen::Lower>() = scaled_.cast<float>();
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
    double_.matrix() = scaled_;
    use_ldlt_ = !double_.factorize();
    if (use_ldlt_) ldlt_.compute(scaled_.selfadjointView<Eigen::Lower>());
    factored_in_double_ = true;
  }
  VectorXd preconditioned(const VectorXd& r) const { return single_.solve(r.cast<float>()).cast<double>(); }
  // Conjugate gradients on the scaled system from the single-precision solve; false if it stalls.
  bool refined_solve(const VectorXd& b, VectorXd& x) const {
    const double target = kRefinedResidual * b.norm();
    x = preconditioned(b);
    VectorXd r = b - scaled_.selfadjointView<Eigen::Lower>() * x;
    VectorXd z = preconditioned(r), p = z;
    double rz = r.dot(z);
    for (int i = 0; i < kRefinementSteps && r.norm() > target; ++i) {
      const VectorXd ap = scaled_.selfadjointView<Eigen::Lower>() * p;
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
  VectorXd d_;
  MatrixXd scaled_;  // D H D, lower triangle
  BasicParallelCholesky<float> single_;
  ParallelCholesky double_;
  Eigen::LDLT<MatrixXd> ldlt_;
  bool single_ok_ = false, use_ldlt_ = false, factored_in_double_ = false;
};

// The exact minimiser over rho of the barrier at fixed lambda. rho enters M only through M_00, so the
// barrier is t rho - log det(rho I + C) + (terms without rho), with C = Sigma_0 - rho I from the
// backward elimination: its minimiser is the root of t = sum_i 1 / (rho + c_i) above -min c_i.
double barrier_minimising_rho(const Reduced& r, const Point& p, double t) {
  const Elimination e = eliminate(lipsdp::assemble(r.w, r.slopes, p.lambda, p.rho), EliminationOutput::InputSchur);
  if (e.input_schur.size() == 0 || !e.input_schur.allFinite()) return p.rho;
  MatrixXd c = e.input_schur;
  c.diagonal().array() -= p.rho;
  const VectorXd ev = Eigen::SelfAdjointEigenSolver<MatrixXd>(c, Eigen::EigenvaluesOnly).eigenvalues();
  const double floor = -ev.minCoeff();
  auto slope = [&](double gap) { return t - (floor + gap + ev.array()).inverse().sum(); };  // rising in gap
  double lo = 0.0, hi = std::max(p.rho - floor, std::numeric_limits<double>::min());
  for (int i = 0; i < 2100 && slope(hi) < 0; ++i) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (slope(mid) < 0 ? lo : hi) = mid;
  }
  const double rho = floor + hi;
  return std::isfinite(rho) && rho > 0 ? rho : p.rho;
}

// Newton decrement^2 below which a point counts as centred.
constexpr double kCentred = 0.1;
// The factors by which the predictor tries to raise t, largest first.
constexpr double kPredictorFactors[] = {64.0, 16.0, 8.0, 4.0, 2.0};

double largest_eigenvalue(const MatrixXd& symmetric) {
  Eigen::SelfAdjointEigenSolver<MatrixXd> eig(symmetric, Eigen::EigenvaluesOnly);
  return eig.eigenvalues().maxCoeff();
}

// A strictly feasible start with one multiplier per layer: from the output backwards, t_k is twice
// what keeps the backward Schur complement Sigma_k = t_k I + Q_k definite, and rho likewise.
Point feasible_start(const Reduced& r) {
  Point p;
  p.lambda.resize(r.n_multipliers);
  const int l = r.l;
  MatrixXd sigma_inverse;  // Sigma_{k+1}^-1
  double scale = 1.0;
  for (int k = l; k >= 0; --k) {
    const int n = r.block_size(k);
    MatrixXd q = MatrixXd::Zero(n, n);  // Sigma_k - (t_k I or rho I)
    if (k == l) {
      q.noalias() -= r.w[l].transpose() * r.w[l];
    } else {
      const double tn = p.lambda(r.multiplier_offset[k + 1]);
      const auto& sl = r.slopes[k];
      if (sl.a != 0.0) q.noalias() += sl.a * tn * (r.w[k].transpose() * r.w[k]);
      const MatrixXd b = -sl.c * tn * r.w[k];
      q.noalias() -= b.transpose() * sigma_inverse * b;
    }
    const double need = std::max(0.0, largest_eigenvalue(-q));
    // Twice the need: closer starts (measured: 2^(1/l)) sit near the boundary and centre far slower.
    const double value = need > 0 ? 2 * need : scale;
    scale = value;
    MatrixXd sigma = q;
    sigma.diagonal().array() += value;
    if (k == 0) {
      p.rho = value;
      break;
    }
    p.lambda.segment(r.multiplier_offset[k], n).setConstant(value);
    sigma_inverse = sigma.llt().solve(MatrixXd::Identity(n, n));
  }
  return p;
}

Point original_scale(const Reduced& r, Point p) {
  const double top = r.log_sigma[r.l + 1];
  p.rho *= std::exp(2 * top);
  for (int k = 1; k <= r.l; ++k)
    p.lambda.segment(r.multiplier_offset[k], r.multiplier_offset[k + 1] - r.multiplier_offset[k]) *=
        std::exp(2 * (top - r.log_sigma[k]));
  return p;
}

struct Path {
  // The centred points, then the last point where that was not centred: the proof's candidates,
  // most recent last.
  std::vector<VectorXd> points;
  int steps = 0;
  double relative_gap = 0.0;
  std::string status = "max_steps";
};

// Follows the barrier's central path from y at t until the gap nu / (t rho) is below tol: Newton
// centring at each t, then a predictor step along the path's tangent to a larger t.
Path follow_path(const Reduced& r, const Barrier& barrier, VectorXd y, double t, const LipSdpOptions& options) {
  Path path;
  int& steps = path.steps;
  bool stalled = false;
  NewtonSystem s;
  NewtonSolver solver(options.single_precision_newton_from);
  while (steps < options.max_newton_steps) {
    // Centre at t.
    bool is_centred = false;
    while (steps < options.max_newton_steps) {
      barrier.newton_system(barrier.unpack(y), t, s);
      ++steps;
      solver.factorize(s.hessian);
      const VectorXd step = -solver.solve(s.gradient);
      const double decrement2 = -s.gradient.dot(step);
      if (!std::isfinite(decrement2)) { stalled = true; break; }
      if (decrement2 < kCentred) {
        is_centred = true;
        break;
      }
      const double f0 = barrier.value(barrier.unpack(y), t);
      double alpha = 1.0;
      bool moved = false;
      double f_moved = f0;
      for (int ls = 0; ls < 60; ++ls, alpha *= 0.5) {
        const VectorXd trial = y + alpha * step;
        const double f = barrier.value(barrier.unpack(trial), t);
        if (std::isfinite(f) && f <= f0 - 0.25 * alpha * decrement2) {
          y = trial;
          f_moved = f;
          moved = true;
          break;
        }
      }
      // Far from the centre the barrier can fall like -k log(distance) along the Newton direction,
      // where full steps only double the distance: extend the step while that keeps paying.
      for (double longer = 2 * alpha; moved && alpha == 1.0 && longer <= 1 << 20; longer *= 2) {
        const VectorXd trial = y + (longer - longer / 2) * step;
        const double f = barrier.value(barrier.unpack(trial), t);
        if (!(f < f_moved)) break;
        y = trial;
        f_moved = f;
      }
      if (!moved) { stalled = true; break; }
      // rho is then set to its exact minimiser: without this, rho oscillated from step to step and
      // the first centring on deep networks took 100-200 damped steps at a decrement of about 2
      // (measured on GLipSDP's MNIST W64 with 16 weights: 191 steps, 23 with it).
      VectorXd best = y;
      best(0) = barrier_minimising_rho(r, barrier.unpack(y), t);
      if (barrier.value(barrier.unpack(best), t) <= f_moved) y = best;
    }
    if (!is_centred) {
      path.status = stalled ? "stalled" : "max_steps";
      break;
    }
    path.points.push_back(y);
    path.relative_gap = barrier.nu() / t / std::max(y(0), 1e-300);
    if (path.relative_gap <= options.tol) { path.status = "optimal"; break; }
    // Predictor: the central path is close to linear in 1/t (y(t) ~ y* + c / t), so its tangent
    // dy/dt = -H^-1 e_rho (H, the barrier's Hessian, does not depend on t) is followed in 1/t:
    // y(mu t) ~ y + (1 - 1/mu) t dy/dt, to the largest mu that keeps it feasible; then centre there.
    // (Followed in t, as y + (mu - 1) t dy/dt, it overshot for any mu > 2: 20-50% more steps on the
    // ECLipsE grid and GLipSDP's MNIST models.)
    const VectorXd tangent = -solver.solve(VectorXd::Unit(barrier.variables(), 0));
    double mu = 1.0;
    for (double trial_mu : kPredictorFactors) {
      const VectorXd trial = y + (1 - 1 / trial_mu) * t * tangent;
      if (std::isfinite(barrier.value(barrier.unpack(trial), trial_mu * t))) {
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

}  // namespace

LipSdpResult solve_lipsdp(const SlopeRestrictedNetwork& net, const LipSdpOptions& options) {
  net.validate();
  if (!(options.tol > 0)) throw std::invalid_argument("LipSDP: tol must be positive");
  const Reduced r = reduce(net);
  const Barrier barrier(r, options.multipliers);
  LipSdpResult result;

  VectorXd y = barrier.pack(feasible_start(r));
  if (!std::isfinite(barrier.value(barrier.unpack(y), 1.0))) {
    // Rounding in the start's construction: inflate every variable until strictly feasible.
    for (int i = 0; i < 60 && !std::isfinite(barrier.value(barrier.unpack(y), 1.0)); ++i) y *= 2;
  }
  // Start with the objective's weight t rho a tenth of the barrier's nu, i.e. centre near the start
  // and let the predictor follow the path (measured on the LipSDP and GLipSDP MNIST models: deep
  // networks centre far slower from t rho = 1 or 10 nu).
  const double t = 0.1 * barrier.nu() / std::max(y(0), 1e-300);
  const Path path = follow_path(r, barrier, y, t, options);
  result.status = path.status;
  result.relative_gap = path.relative_gap;
  result.newton_steps = path.steps;
  // The proof needs M strictly definite; near the boundary its rounding margins cost more than the
  // last steps gained, so the last few points are all tried and the best proved bound kept.
  const std::vector<VectorXd>& points = path.points;
  const size_t tried = std::min<size_t>(points.size(), 3);
  for (size_t i = points.size() - tried; i < points.size(); ++i) {
    const Point p = original_scale(r, barrier.unpack(points[i]));
    const double bound = lipsdp_certified_bound(net, p.lambda);
    if (bound < result.certified_upper || result.multipliers.size() == 0) {
      result.multipliers = p.lambda;
      result.rho = p.rho;
      result.certified_upper = bound;
    }
  }
  if (!std::isfinite(result.certified_upper) && result.multipliers.size() > 0) {
    // Where the layers decouple (slopes symmetric about 0, as MaxMin's rotated form), every hidden
    // block is tight at the optimum, and the last points can sit closer to the boundary than the
    // proof's rounding margins. lambda_k (1 + d)^(l + 1 - k) adds d T_k to each such block's slack
    // for a factor of about (1 + d)^((l + 1) / 2) on the bound; only what the proof accepts is kept.
    const VectorXd solved = result.multipliers;
    for (double d : {1e-9, 1e-7, 1e-5, 1e-3}) {
      VectorXd inflated = solved;
      for (int k = 1; k <= r.l; ++k)
        inflated.segment(r.multiplier_offset[k], r.multiplier_offset[k + 1] - r.multiplier_offset[k]) *=
            std::pow(1 + d, r.l + 1 - k);
      const double bound = lipsdp_certified_bound(net, inflated);
      if (std::isfinite(bound)) {
        result.multipliers = inflated;
        result.certified_upper = bound;
        break;
      }
    }
  }
  return result;
}

}  // namespace lipcert
