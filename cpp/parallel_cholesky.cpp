#include "parallel_cholesky.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace lipcert {

namespace {
// Threads share the work in panels of kBlock rows or columns; the factorisation advances kStep columns
// at a time. Each step's rank update streams the whole trailing matrix, so wider steps read it fewer
// times (measured on 2 cores, float, n = 4033: 184 ms with steps of 96, 163 ms with 256; n = 2500:
// 44 -> 40 ms; n <= 2049 and double precision about the same).
constexpr Eigen::Index kBlock = 96;
constexpr Eigen::Index kStep = 256;

Eigen::Index panel_count(Eigen::Index n) { return (n + kBlock - 1) / kBlock; }

// solve(panel) for each panel of kBlock columns of b, over the OpenMP threads.
template <typename Matrix, typename Solve>
void by_column_panels(Matrix& b, Solve solve) {
  const Eigen::Index panels = panel_count(b.cols());
#pragma omp parallel for schedule(dynamic) if (panels > 1)
  for (Eigen::Index c = 0; c < panels; ++c) {
    const Eigen::Index c0 = c * kBlock;
    solve(b.middleCols(c0, std::min(kBlock, b.cols() - c0)));
  }
}

}  // namespace

template <typename Scalar>
void lower_rank_update(Eigen::Ref<DenseMatrix<Scalar>> a, const Eigen::Ref<const DenseMatrix<Scalar>>& u, Scalar alpha) {
  const Eigen::Index n = a.rows(), panels = panel_count(n);
  if (panels == 1) {  // one panel's product would fill the upper triangle too
    a.template selfadjointView<Eigen::Lower>().rankUpdate(u, alpha);
    return;
  }
  // In a parallel region: Eigen then multiplies serially inside it, where on its own it would start its
  // parallel GEMM, whose spin-waiting costs more than small products.
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index c = 0; c < panels; ++c) {
    const Eigen::Index c0 = c * kBlock, cb = std::min(kBlock, n - c0);
    a.block(c0, c0, n - c0, cb).noalias() += alpha * u.middleRows(c0, n - c0) * u.middleRows(c0, cb).transpose();
  }
}

template <typename Scalar>
bool BasicParallelCholesky<Scalar>::factorize() {
  const Eigen::Index n = l_.rows();
  for (Eigen::Index k = 0; k < n; k += kStep) {
    const Eigen::Index kb = std::min(kStep, n - k), rest = n - k - kb;
    Eigen::Ref<Matrix> block = l_.block(k, k, kb, kb);
    Eigen::LLT<Eigen::Ref<Matrix>> diagonal(block);  // factorises in place
    if (diagonal.info() != Eigen::Success) return false;
    if (rest == 0) break;
    auto panel = l_.block(k + kb, k, rest, kb);
    const auto l11t = l_.block(k, k, kb, kb).template triangularView<Eigen::Lower>().transpose();
    // L21 = A21 L11^-T, by row blocks; then A22 -= L21 L21' on the lower triangle.
    const Eigen::Index panels = panel_count(rest);
#pragma omp parallel for schedule(dynamic) if (panels > 1)
    for (Eigen::Index r = 0; r < panels; ++r) {
      const Eigen::Index r0 = r * kBlock, rb = std::min(kBlock, rest - r0);
      l11t.template solveInPlace<Eigen::OnTheRight>(panel.middleRows(r0, rb));
    }
    lower_rank_update<Scalar>(l_.block(k + kb, k + kb, rest, rest), panel, Scalar(-1));
  }
  return l_.diagonal().allFinite() && (l_.diagonal().array() > 0).all();
}

template <typename Scalar>
typename BasicParallelCholesky<Scalar>::Vector BasicParallelCholesky<Scalar>::solve(const Vector& b) const {
  Vector x = l_.template triangularView<Eigen::Lower>().solve(b);
  l_.template triangularView<Eigen::Lower>().transpose().solveInPlace(x);
  return x;
}

template <typename Scalar>
void BasicParallelCholesky<Scalar>::solve_lower_in_place(Matrix& b) const {
  by_column_panels(b, [&](auto panel) { l_.template triangularView<Eigen::Lower>().solveInPlace(panel); });
}

template <typename Scalar>
void BasicParallelCholesky<Scalar>::solve_upper_in_place(Matrix& b) const {
  by_column_panels(b, [&](auto panel) { l_.template triangularView<Eigen::Lower>().transpose().solveInPlace(panel); });
}

template <typename Scalar>
typename BasicParallelCholesky<Scalar>::Matrix BasicParallelCholesky<Scalar>::inverse() const {
  Matrix a = Matrix::Identity(l_.rows(), l_.cols());
  solve_lower_in_place(a);
  solve_upper_in_place(a);
  return a;
}

Eigen::VectorXd lower_symmetric_product(const Eigen::MatrixXd& a, const Eigen::VectorXd& v) {
  // Panels narrow enough that each one's columns stay in cache for their second use (the transposed
  // product).
  constexpr Eigen::Index kColumns = 32;
  const Eigen::Index n = a.rows(), panels = (n + kColumns - 1) / kColumns;
  if (panels < 8 || omp_get_max_threads() == 1 || omp_in_parallel()) return a.selfadjointView<Eigen::Lower>() * v;
  std::vector<Eigen::VectorXd> partial(omp_get_max_threads(), Eigen::VectorXd::Zero(n));
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index c = 0; c < panels; ++c) {
    Eigen::VectorXd& y = partial[omp_get_thread_num()];
    const Eigen::Index c0 = c * kColumns, cb = std::min(kColumns, n - c0), rest = n - c0 - cb;
    y.segment(c0, cb).noalias() += a.block(c0, c0, cb, cb).selfadjointView<Eigen::Lower>() * v.segment(c0, cb);
    if (rest == 0) continue;
    const auto below = a.block(c0 + cb, c0, rest, cb);
    y.tail(rest).noalias() += below * v.segment(c0, cb);
    y.segment(c0, cb).noalias() += below.transpose() * v.tail(rest);
  }
  for (size_t t = 1; t < partial.size(); ++t) partial[0] += partial[t];
  return partial[0];
}

template class BasicParallelCholesky<double>;
template class BasicParallelCholesky<float>;
template void lower_rank_update<double>(Eigen::Ref<DenseMatrix<double>>, const Eigen::Ref<const DenseMatrix<double>>&, double);
template void lower_rank_update<float>(Eigen::Ref<DenseMatrix<float>>, const Eigen::Ref<const DenseMatrix<float>>&, float);

}  // namespace lipcert
