#pragma once
// Products of inverses of block-tridiagonal matrices, P_i^-1 D_i P_{i+1}^-1 ... D_{j-1} P_j^-1, on the
// block-tridiagonal pattern E only: the primal-dual method's directions (Xh dS M^-1 and its
// second-order terms) without a dense product.
#include <vector>

#include "lipsdp_blocks.hpp"

namespace lipcert::lipsdp {

// One factor P_i of a chain: symmetric definite block tridiagonal, with its backward elimination
// (EliminationOutput::InverseMaps). A factor that recurs is passed with the same elimination.
struct ChainFactor {
  const BlockTridiagonal* matrix;
  const Elimination* elimination;
};

// The blocks on E of the products G_ij = P_i^-1 D_i P_{i+1}^-1 ... D_{j-1} P_j^-1, 0 < j - i <= longest,
// of a chain P_0, D_0, P_1, ..., P_{K-1} (D_i symmetric block tridiagonal). They are blocks of the
// inverse of the block upper-bidiagonal [[P_0, -D_0], [P_1, -D_1], ..., [P_{K-1}]], which, its factors
// interleaved layer by layer, is block tridiagonal with K x K upper-triangular blocks; G_ij only
// depends on the entries between i and j. Its block recurrences (a backward elimination, then the
// inverse's blocks on E forward, as lower_block_inverse does for one factor) cost O(K longest^2 d w^3)
// for d layers of width w, where forming G_ij densely costs O(d^2 w^3). Their error grows about as
// cond(P)^2 where the dense products' grows as cond(P) (measured near LipSDP's optimum, where M is
// nearly singular), so a caller checks what it gets (lipsdp_primal_dual.cpp: kChainResidual).
class ChainInverse {
 public:
  ChainInverse(const std::vector<ChainFactor>& factors, const std::vector<const BlockTridiagonal*>& couplings, int longest);
  // (G_ij + G_ij') / 2 on E.
  BlockTridiagonal symmetric_part(int i, int j) const;

 private:
  int parts_;
  // Per layer k and pair (i, j) at i * parts_ + j: G_kk, G_{k,k-1} and G_{k-1,k}.
  std::vector<std::vector<Eigen::MatrixXd>> diag_, sub_, super_;
};

}  // namespace lipcert::lipsdp
