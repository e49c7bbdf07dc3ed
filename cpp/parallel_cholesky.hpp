#pragma once
// Dense Cholesky factorisation, solves with its factor, rank updates and symmetric products that use
// every OpenMP thread. Eigen's LLT updates the trailing matrix with a single-threaded rank update that
// its parallel GEMM does not reach, and its triangular solves and symmetric products run on one
// thread; the Newton systems of LipSDP-Neuron (one row per neuron) and the wide blocks of unrolled
// convolutions spent most of their time there.
#include <Eigen/Dense>

namespace lipcert {

template <typename Scalar>
using DenseMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

template <typename Scalar>
class BasicParallelCholesky {
 public:
  using Matrix = DenseMatrix<Scalar>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  // The matrix to factorise: fill its lower triangle, then call factorize(). Kept between
  // factorisations of one size, so that no fresh memory is touched.
  Matrix& matrix() { return l_; }
  // After factorize(): L in the lower triangle, for callers that solve inside their own threads.
  const Matrix& factor() const { return l_; }
  // Overwrites the lower triangle with L (A = L L'). False when a pivot is not positive (A is not
  // numerically positive definite); the solves are then meaningless.
  bool factorize();
  // x = A^-1 b.
  Vector solve(const Vector& b) const;
  // b <- L^-1 b and b <- L'^-1 b, by column panels.
  void solve_lower_in_place(Matrix& b) const;
  void solve_upper_in_place(Matrix& b) const;
  // A^-1 = L'^-1 L^-1.
  Matrix inverse() const;

 private:
  Matrix l_;
};

using ParallelCholesky = BasicParallelCholesky<double>;

// a += alpha u u' on the lower triangle of a, by column panels over the OpenMP threads (Eigen's
// rankUpdate runs on one).
template <typename Scalar>
void lower_rank_update(Eigen::Ref<DenseMatrix<Scalar>> a, const Eigen::Ref<const DenseMatrix<Scalar>>& u, Scalar alpha);

// a v for a symmetric a of which only the lower triangle is stored, by column panels over the OpenMP
// threads (Eigen's selfadjoint product runs on one).
Eigen::VectorXd lower_symmetric_product(const Eigen::MatrixXd& a, const Eigen::VectorXd& v);

extern template class BasicParallelCholesky<double>;
extern template class BasicParallelCholesky<float>;
extern template void lower_rank_update<double>(Eigen::Ref<DenseMatrix<double>>, const Eigen::Ref<const DenseMatrix<double>>&, double);
extern template void lower_rank_update<float>(Eigen::Ref<DenseMatrix<float>>, const Eigen::Ref<const DenseMatrix<float>>&, float);

}  // namespace lipcert
