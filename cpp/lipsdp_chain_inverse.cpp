#include "lipsdp_chain_inverse.hpp"

#include <utility>

namespace lipcert::lipsdp {

using Eigen::MatrixXd;

namespace {
constexpr int kParallelFrom = 32;
}  // namespace

ChainInverse::ChainInverse(const std::vector<ChainFactor>& factors, const std::vector<const BlockTridiagonal*>& couplings,
                           int longest)
    : parts_(static_cast<int>(factors.size())) {
  const int parts = parts_, l = static_cast<int>(factors[0].matrix->diag.size()) - 1;
  auto at = [parts](int i, int j) { return i * parts + j; };
  std::vector<std::pair<int, int>> pairs;  // shortest first: V_ij needs V_mj for i < m <= j
  for (int span = 1; span <= longest; ++span)
    for (int i = 0; i + span < parts; ++i) pairs.emplace_back(i, i + span);
  const int count = static_cast<int>(pairs.size());
  auto p = [&](int i) -> const BlockTridiagonal& { return *factors[i].matrix; };
  auto d = [&](int i) -> const BlockTridiagonal& { return *couplings[i]; };
  auto maps = [&](int i) -> const std::vector<MatrixXd>& { return factors[i].elimination->f; };
  // Side by side only where a layer's products outweigh a parallel region's cost.
  auto parallel = [&](int k) { return p(0).diag[k].rows() >= kParallelFrom; };

  // Backward elimination of the compound: S_l = A_l, S_k = A_k + U_{k+1} F_{k+1}, with its blocks
  // A_k (diagonal), L_k = (k, k-1) and U_k = (k-1, k) holding P_i's blocks at (i, i) and -D_i's at
  // (i, i+1); F_k = -S_k^-1 L_k, E_k = -U_k S_k^-1. The entries (i, i) of S_k, F_k and E_k are P_i's own
  // Sigma_k, F_k and F_k': only the others are formed here.
  std::vector<std::vector<MatrixXd>> v(l + 1), f(l + 1), e(l + 1);
  // A factor may recur (M in M, Xh^-1, M, M): its own blocks are formed once, at own[i].
  std::vector<int> own(parts, 0);
  for (int i = 0; i < parts; ++i)
    while (factors[own[i]].elimination != factors[i].elimination) ++own[i];
  std::vector<std::vector<MatrixXd>> sigma_inverse(l + 1, std::vector<MatrixXd>(parts));
  for (int k = l; k >= 0; --k) {
    const int n = static_cast<int>(p(0).diag[k].rows());
    std::vector<MatrixXd> s(parts * parts);
    for_each_index(count, parallel(k), [&](int q) {
      const auto [i, j] = pairs[q];
      MatrixXd& out = s[at(i, j)];
      if (j == i + 1) out = -d(i).diag[k];
      else out.setZero(n, n);
      if (k < l) {
        out.noalias() += p(i).sub[k + 1].transpose() * f[k + 1][at(i, j)];
        out.noalias() -= d(i).sub[k + 1].transpose() * (i + 1 == j ? maps(j)[k + 1] : f[k + 1][at(i + 1, j)]);
      }
    });
    for (int i = 0; i < parts; ++i)
      if (own[i] == i) sigma_inverse[k][i] = factors[i].elimination->sigma[k].inverse();
    auto v_at = [&](int i, int j) -> const MatrixXd& { return i == j ? sigma_inverse[k][own[i]] : v[k][at(i, j)]; };
    v[k].resize(parts * parts);
    // V = S_k^-1 by back substitution, a span at a time: V_ij = -Sigma_i^-1 sum_{i < m <= j} S_im V_mj.
    for (int span = 1, first = 0; span <= longest; ++span) {
      int last = first;
      while (last < count && pairs[last].second - pairs[last].first == span) ++last;
      for_each_index(last - first, parallel(k), [&, first](int q) {
        const auto [i, j] = pairs[first + q];
        MatrixXd sum = s[at(i, i + 1)] * v_at(i + 1, j);
        for (int m = i + 2; m <= j; ++m) sum.noalias() += s[at(i, m)] * v_at(m, j);
        v[k][at(i, j)].noalias() = -sigma_inverse[k][own[i]] * sum;
      });
      first = last;
    }
    if (k == 0) break;
    f[k].resize(parts * parts);
    e[k].resize(parts * parts);
    for_each_index(2 * count, parallel(k), [&](int q) {
      const auto [i, j] = pairs[q / 2];
      if (q % 2 == 0) {
        MatrixXd& out = f[k][at(i, j)];  // -(V_{i,j-1} L_{j-1,j} + V_ij L_jj)
        out.noalias() = v_at(i, j - 1) * d(j - 1).sub[k];
        out.noalias() -= v_at(i, j) * p(j).sub[k];
      } else {
        MatrixXd& out = e[k][at(i, j)];  // -(U_ii V_ij + U_{i,i+1} V_{i+1,j})
        out.noalias() = d(i).sub[k].transpose() * v_at(i + 1, j);
        out.noalias() -= p(i).sub[k].transpose() * v_at(i, j);
      }
    });
  }

  // The inverse's blocks on E, forward: G_{k,k-1} = F_k G_{k-1,k-1}, G_{k-1,k} = G_{k-1,k-1} E_k,
  // G_kk = S_k^-1 + G_{k,k-1} E_k. The entries (i, i) are P_i^-1's blocks, by the same recurrences:
  // own_diag = (P_i^-1)_{k-1,k-1} and own_sub = (P_i^-1)_{k,k-1}.
  diag_.assign(l + 1, std::vector<MatrixXd>(parts * parts));
  sub_.assign(l + 1, std::vector<MatrixXd>(parts * parts));
  super_.assign(l + 1, std::vector<MatrixXd>(parts * parts));
  for (int q = 0; q < count; ++q) diag_[0][at(pairs[q].first, pairs[q].second)] = v[0][at(pairs[q].first, pairs[q].second)];
  std::vector<MatrixXd> own_diag(parts), own_sub(parts);
  for (int i = 0; i < parts; ++i)
    if (own[i] == i) own_diag[i] = sigma_inverse[0][i];
  for (int k = 1; k <= l; ++k) {
    for (int i = 0; i < parts; ++i)
      if (own[i] == i) own_sub[i].noalias() = maps(i)[k] * own_diag[i];
    const std::vector<MatrixXd> &g = diag_[k - 1], &fk = f[k], &ek = e[k];
    std::vector<MatrixXd> &gs = sub_[k], &gu = super_[k], &gk = diag_[k];
    for_each_index(2 * count, parallel(k), [&](int q) {
      const auto [i, j] = pairs[q / 2];
      if (q % 2 == 0) {
        MatrixXd& out = gs[at(i, j)];  // sum_{i <= m <= j} F_im G_mj
        out.noalias() = maps(i)[k] * g[at(i, j)];
        for (int m = i + 1; m < j; ++m) out.noalias() += fk[at(i, m)] * g[at(m, j)];
        out.noalias() += fk[at(i, j)] * own_diag[own[j]];
      } else {
        MatrixXd& out = gu[at(i, j)];  // sum_{i <= m <= j} G_im E_mj
        out.noalias() = own_diag[own[i]] * ek[at(i, j)];
        for (int m = i + 1; m < j; ++m) out.noalias() += g[at(i, m)] * ek[at(m, j)];
        out.noalias() += g[at(i, j)] * maps(j)[k].transpose();
      }
    });
    for_each_index(count, parallel(k), [&](int q) {
      const auto [i, j] = pairs[q];
      MatrixXd& out = gk[at(i, j)];  // V_ij + sum_{i <= m <= j} G_{k,k-1; im} E_mj
      out = v[k][at(i, j)];
      out.noalias() += own_sub[own[i]] * ek[at(i, j)];
      for (int m = i + 1; m < j; ++m) out.noalias() += gs[at(i, m)] * ek[at(m, j)];
      out.noalias() += gs[at(i, j)] * maps(j)[k].transpose();
    });
    for (int i = 0; i < parts; ++i)
      if (own[i] == i) {
        own_diag[i] = sigma_inverse[k][i];
        own_diag[i].noalias() += own_sub[i] * maps(i)[k].transpose();
      }
  }
}

BlockTridiagonal ChainInverse::symmetric_part(int i, int j) const {
  const int at = i * parts_ + j, l = static_cast<int>(diag_.size()) - 1;
  BlockTridiagonal b;
  b.diag.resize(l + 1);
  b.sub.resize(l + 1);
  for (int k = 0; k <= l; ++k) {
    const MatrixXd& g = diag_[k][at];
    b.diag[k] = 0.5 * (g + g.transpose());
    if (k > 0) b.sub[k] = 0.5 * (sub_[k][at] + super_[k][at].transpose());
  }
  return b;
}

}  // namespace lipcert::lipsdp
