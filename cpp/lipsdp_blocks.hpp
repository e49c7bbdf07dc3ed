#pragma once
// The LipSDP matrix M(rho, lambda) as blocks; shared by the solver and the certificate.
#include <vector>

#include "lipcert/lipsdp.hpp"
#include "parallel_cholesky.hpp"

namespace lipcert::lipsdp {

struct LayerSlopes {
  double c;  // (alpha + beta) / 2: M_{k,k-1} = -c T_k W_{k-1}
  double a;  // alpha * beta: M_{k-1,k-1} += a W_{k-1}' T_k W_{k-1}
};
std::vector<LayerSlopes> layer_slopes(const SlopeRestrictedNetwork& net);

// Where hidden layer k's multipliers start in lambda (index k = 1..l; entry 0 is 0, entry l+1 is N).
std::vector<int> multiplier_offsets(const std::vector<Eigen::MatrixXd>& weights);

struct BlockTridiagonal {
  std::vector<Eigen::MatrixXd> diag;  // M_kk, k = 0..l
  std::vector<Eigen::MatrixXd> sub;   // sub[k] = M_{k,k-1}, k = 1..l (sub[0] is empty)
};

// Each neuron's multiplier from shared ones: shared(group[i]) (SharedLipSdp's groups of one part).
Eigen::VectorXd group_values(const std::vector<int>& group, const Eigen::Ref<const Eigen::VectorXd>& shared);

// M(rho, lambda) for the given weights; the solver passes its reduced ones.
BlockTridiagonal assemble(const std::vector<Eigen::MatrixXd>& weights, const std::vector<LayerSlopes>& slopes,
                          const Eigen::VectorXd& lambda, double rho);

// What eliminate() computes besides log det M: the barrier's value needs nothing more, X = M^-1 needs
// the maps F_k, and rho's estimate needs Sigma_0 unfactored (the elimination is then of the hidden
// blocks only, and finished() completes it for any rho).
enum class EliminationOutput { LogDet, InverseMaps, InputSchur };

// Backward block elimination of M: Sigma_l = M_ll, Sigma_k = M_kk - M_{k+1,k}' Sigma_{k+1}^-1 M_{k+1,k}.
// Its factorisations, solves and updates use every OpenMP thread, which pays on wide (unrolled
// convolution, MNIST MLP) blocks.
struct Elimination {
  bool ok = false;      // every factored Sigma_k was (numerically) positive definite
  double logdet = 0.0;  // sum of log det Sigma_k over the factored blocks
  std::vector<ParallelCholesky> sigma;
  std::vector<Eigen::MatrixXd> lower;  // L_k^-1 M_{k,k-1}, L_k Sigma_k's factor (k = 1..l)
  std::vector<Eigen::MatrixXd> f;      // InverseMaps: F_k = -Sigma_k^-1 M_{k,k-1}, X_{k,j} = F_k X_{k-1,j} for j < k
  Eigen::MatrixXd input_schur;         // Sigma_0, both triangles (every output)
};
Elimination eliminate(const BlockTridiagonal& m, EliminationOutput output);

// From an InputSchur elimination of M, the elimination of M + shift E_00 for `output` (LogDet or
// InverseMaps): only Sigma_0 changes, so only it is factorised. The solver's rho enters M only there.
Elimination finished(Elimination hidden, double shift, EliminationOutput output);
// log det (M + shift E_00) from an InputSchur elimination of M; -inf where it is not definite.
double shifted_logdet(const Elimination& hidden, double shift);

// body(i) for i = 0..n-1: side by side on the OpenMP threads when `parallel`, else in order on this
// thread. Not an `if (parallel)` clause: its team of one makes every parallel region inside a nested
// one, and the block factorisations' regions then cost 35% more on one wide LMI (GLipSDP's MNIST W64).
template <class Body>
void for_each_index(int n, bool parallel, Body body) {
  if (!parallel) {
    for (int i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < n; ++i) body(i);
}

}  // namespace lipcert::lipsdp
