#pragma once
// What the LipSDP solver's two path-following methods share (lipsdp_solver.cpp: the barrier method and
// the active-set driver; lipsdp_primal_dual.cpp: the primal-dual method): the reduced LMI, its inverse,
// the Newton system's products and their solver.
#include <omp.h>

#include <limits>
#include <string>
#include <vector>

#include "lipcert/lipsdp.hpp"
#include "lipsdp_blocks.hpp"
#include "parallel_cholesky.hpp"

namespace lipcert::lipsdp {

using Eigen::MatrixXd;
using Eigen::VectorXd;

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

// X = M^-1 from the elimination, its blocks on and below the diagonal (lipsdp_solver.cpp).
void lower_block_inverse(const Reduced& r, const Elimination& e, MatrixXd& x);

// LMI r's M at y = (rho, one multiplier per group).
BlockTridiagonal lmi_at(const Reduced& r, const VectorXd& y);

// Buffers of one LMI's share of a Newton system, kept from step to step: fresh matrices of this size
// cost a page fault per page (measured: 7% of a solve on GLipSDP's MNIST W64 with 16 weights).
struct Workspace {
  MatrixXd x, h;
  VectorXd trace_xa, cross_rho;
};

// The Newton systems' entries for neurons i of hidden layer k and j of layer kk <= k come from
// G_i' X G_j, G_i = [e_i, w_i] (e_i in block k, w_i = row i of W_{k-1} in block k-1), for a
// lower-stored symmetric X: the blocks ee = X_{k,kk}, ew = X_{k,kk-1} W_{kk-1}',
// we = W_{k-1} X_{k-1,kk} and ww = W_{k-1} X_{k-1,kk-1} W_{kk-1}'. They are formed one row of layers
// at a time (row(k), then column(kk) for each kk <= k) and used at once: formed as whole matrices
// X W and W'X W they were written to memory and read back, about 1 GB per primal-dual iteration on
// GLipSDP's MNIST W64 with 64 weights. (lipsdp_solver.cpp)
class NeuronPairBlocks {
 public:
  NeuronPairBlocks(const Reduced& r, const MatrixXd& x) : r_(r), x_(x) {}
  // body(state, k) for the rows k = l..1 (the longest first), state = make_state() once per thread.
  // The rows go side by side, one per thread, from 4 rows per thread and outside a parallel region:
  // fewer rows are too few to share out evenly (measured: 784-1000-1000-10, two rows, took 1.15x the
  // time of Eigen's parallel products inside each row), and each row's products are then wide.
  template <class MakeState, class Body>
  static void for_each_row(const Reduced& r, MakeState make_state, Body body) {
    if (r.l < 4 * omp_get_max_threads() || omp_in_parallel()) {
      auto state = make_state();
      for (int k = r.l; k >= 1; --k) body(state, k);
      return;
    }
#pragma omp parallel
    {
      auto state = make_state();
#pragma omp for schedule(dynamic)
      for (int k = r.l; k >= 1; --k) body(state, k);
    }
  }
  // Row k: W_{k-1} X_{k-1, j} for the blocks j = 0..k.
  void row(int k);
  // Column kk <= k of the row: ee, ew, we and ww.
  void column(int kk);
  // W_{k-1} X_{k-1,0}: row k's products with the input block.
  auto weighted_input() const { return wx_.leftCols(r_.block_size(0)); }
  MatrixXd ee, ew, we, ww;

 private:
  const Reduced& r_;
  const MatrixXd& x_;
  int k_ = 0;
  MatrixXd wx_;  // W_{k-1} X_{k-1, 0..k}
};

// X W for a lower-stored symmetric X: column i is X w_i (lipsdp_solver.cpp).
void inverse_times_weights(const Reduced& r, const MatrixXd& x, MatrixXd& xw);

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
    return d_.cwiseProduct(lower_symmetric_product(*hessian_, d_.cwiseProduct(v)));
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

struct Path {
  // The centred points, then the last point where that was not centred: the proof's candidates,
  // most recent last.
  std::vector<VectorXd> points;
  int steps = 0;
  int chain_steps = 0;  // the primal-dual method's: iterations whose directions came from chains
  double relative_gap = 0.0;
  std::string status = "max_steps";
};


// Mehrotra's primal-dual method on LMI r (a multiplier per neuron) from the strictly feasible y
// (lipsdp_primal_dual.cpp): the dual points it passes, most recent last.
Path primal_dual_path(const Reduced& r, VectorXd y, const LipSdpOptions& options);

}  // namespace lipcert::lipsdp
