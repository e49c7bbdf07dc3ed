#pragma once
/// SeqLip (Scaman & Virmaux 2018): a global l2 Lipschitz bound that couples consecutive layers through
/// the activation between them.
///
/// With W_k = U_k S_k V_k' (SVD) split as W_k = L_k R_k — L_0 = U_0 S_0, R_0 = V_0'; L_k = U_k S_k^1/2,
/// R_k = S_k^1/2 V_k' for hidden k; L_l = U_l, R_l = S_l V_l' — the Jacobian W_l D_l ... D_1 W_0 is
/// L_l [R_l D_l L_{l-1}] ... [R_1 D_1 L_0] R_0, so its norm is at most ||L_l|| ||R_0|| times, for each
/// hidden layer j, the largest ||R_j D L_{j-1}|| over diagonal D with entries in [alpha_j, beta_j]. That
/// maximum of a convex function over a box sits at a vertex. Each is found by branch and bound over the
/// neurons (a vertex value below, a certified midpoint-plus-radius bound above), and bounded also by
/// the LipSDP-Neuron bound of the pair where that fits the time, so every reported per-pair bound, and
/// the product, is certified; the floating-point SVDs only choose the split, whose residual is carried
/// into the bound.
#include <vector>

#include "lipcert/lipsdp.hpp"

namespace lipcert {

struct SeqLipOptions {
  double tol = 1e-6;           ///< a pair is solved when upper - attained <= tol * upper
  double time_limit_s = 10.0;  ///< for the whole network; pairs run in parallel and share it
  long max_nodes_per_pair = 200000;
};

struct SeqLipPair {
  /// Certified bound on max ||R_j D L_{j-1}||_2 over the diagonal D with entries in [alpha_j, beta_j].
  double upper = 0.0;
  /// ||R_j D L_{j-1}||_2 (floating point) at the best vertex D found: SeqLip's greedy value.
  double attained = 0.0;
  long nodes = 0;
  bool solved = false;     ///< upper - attained <= tol * upper
  bool by_lipsdp = false;  ///< upper is the pair's own LipSDP-Neuron bound, below the search's
};

struct SeqLipResult {
  double certified_upper = 0.0;  ///< certified l2 Lipschitz bound of the network
  /// The product of the attained per-pair values: what SeqLip reports, an estimate (neither a proved
  /// upper nor a lower bound of the network's constant).
  double estimate = 0.0;
  /// Bound on what the split's floating-point residuals (and net.weight_error) add to the product.
  double split_error = 0.0;
  std::vector<SeqLipPair> pairs;  ///< one per hidden layer
};

/// SeqLip's bound with every pair solved by branch and bound within the options' limits.
/// Throws std::invalid_argument on an invalid network (SlopeRestrictedNetwork::validate).
SeqLipResult seqlip_bound(const SlopeRestrictedNetwork& net, const SeqLipOptions& options = {});

}  // namespace lipcert
