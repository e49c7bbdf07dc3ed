#include "parallel_cholesky.hpp"

#include <algorithm>

namespace lipcert {

namespace {
constexpr Eigen::Index kBlock = 96;
}

bool ParallelCholesky::factorize() {
  const Eigen::Index n = l_.rows();
  for (Eigen::Index k = 0; k < n; k += kBlock) {
    const Eigen::Index kb = std::min(kBlock, n - k), rest = n - k - kb;
    Eigen::Ref<Eigen::MatrixXd> block = l_.block(k, k, kb, kb);
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> diagonal(block);  // factorises in place
    if (diagonal.info() != Eigen::Success) return false;
    if (rest == 0) break;
    auto panel = l_.block(k + kb, k, rest, kb);
    const auto l11t = l_.block(k, k, kb, kb).triangularView<Eigen::Lower>().transpose();
    const Eigen::Index panels = (rest + kBlock - 1) / kBlock;
    // L21 = A21 L11^-T, by row blocks; then A22 -= L21 L21' on the lower triangle, by column panels.
#pragma omp parallel for schedule(dynamic)
    for (Eigen::Index r = 0; r < panels; ++r) {
      const Eigen::Index r0 = r * kBlock, rb = std::min(kBlock, rest - r0);
      l11t.solveInPlace<Eigen::OnTheRight>(panel.middleRows(r0, rb));
    }
#pragma omp parallel for schedule(dynamic)
    for (Eigen::Index c = 0; c < panels; ++c) {
      const Eigen::Index c0 = c * kBlock, cb = std::min(kBlock, rest - c0);
      l_.block(k + kb + c0, k + kb + c0, rest - c0, cb).noalias() -=
          panel.middleRows(c0, rest - c0) * panel.middleRows(c0, cb).transpose();
    }
  }
  return l_.diagonal().allFinite() && (l_.diagonal().array() > 0).all();
}

Eigen::VectorXd ParallelCholesky::solve(const Eigen::VectorXd& b) const {
  Eigen::VectorXd x = l_.triangularView<Eigen::Lower>().solve(b);
  l_.triangularView<Eigen::Lower>().transpose().solveInPlace(x);
  return x;
}

}  // namespace lipcert
