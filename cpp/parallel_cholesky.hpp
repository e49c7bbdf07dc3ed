#pragma once
// Dense Cholesky factorisation that uses every OpenMP thread. Eigen's LLT updates the trailing
// matrix with a single-threaded rank update that its parallel GEMM does not reach; the Newton systems
// of LipSDP-Neuron (one row per neuron) spent most of a step there.
#include <Eigen/Dense>

namespace lipcert {

class ParallelCholesky {
 public:
  // The matrix to factorise: fill its lower triangle, then call factorize(). Kept between
  // factorisations of one size, so that no fresh memory is touched.
  Eigen::MatrixXd& matrix() { return l_; }
  // Overwrites the lower triangle with L (A = L L'). False when a pivot is not positive (A is not
  // numerically positive definite); solve() is then meaningless.
  bool factorize();
  // x = A^-1 b.
  Eigen::VectorXd solve(const Eigen::VectorXd& b) const;

 private:
  Eigen::MatrixXd l_;
};

}  // namespace lipcert
