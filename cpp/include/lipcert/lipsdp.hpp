#pragma once
/// LipSDP-Neuron and LipSDP-Layer (Fazlyab et al. 2019) for feed-forward networks with
/// slope-restricted activations, and the proof of their certificates.
///
/// With z_0 = x, v_k = W_{k-1} z_{k-1}, z_k = phi_k(v_k) and multipliers T_k = diag(lambda) >= 0,
/// ||f(x) - f(y)||_2 <= sqrt(rho) ||x - y||_2 whenever the quadratic form
///   rho |z_0|^2 - |W_l z_l|^2 + sum_k [a_k v_k' T_k v_k - 2 c_k v_k' T_k z_k + z_k' T_k z_k]
/// (a_k = alpha_k beta_k, c_k = (alpha_k + beta_k) / 2) is positive semidefinite. Its matrix M is block
/// tridiagonal over (z_0, ..., z_l), so the solver and the proof both work block by block and their
/// cost grows linearly with depth, not with the cube of the total width.
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Dense>

namespace lipcert {

class Network;

/// f(x) = W_l phi_l(W_{l-1} ... phi_1(W_0 x + b_0) ...) + b_l (biases do not matter). Hidden layer
/// k = 1..l has weights[k-1].rows() neurons whose activation has slopes in [alpha[k-1], beta[k-1]].
struct SlopeRestrictedNetwork {
  std::vector<Eigen::MatrixXd> weights;  ///< W_0 .. W_l
  std::vector<double> alpha, beta;       ///< one pair per hidden layer
  /// Empty, or one entry per weight: weight_error[k] >= ||W_k(true) - weights[k]||_F, for weights that
  /// are computed products of several linear layers.
  std::vector<double> weight_error;

  int hidden_layers() const { return static_cast<int>(weights.size()) - 1; }
  /// Neurons of hidden layer k, 1 <= k <= hidden_layers().
  int width(int k) const { return static_cast<int>(weights[k - 1].rows()); }
  int neurons() const;
  /// Throws std::invalid_argument on mismatched shapes, non-finite values, alpha > beta or no hidden layer.
  void validate() const;
};

/// The LipSDP view of a network: split at its activations, each linear stretch one matrix. A MaxMin
/// layer becomes a 45-degree rotation of each pair, an activation with slopes in [-1, 1] (|a - b| on
/// one half, the identity on the other) and the rotation back, merged into the stretches around it.
/// Convolutions and pooling are unrolled (conv_is_unrollable); consecutive linear layers are multiplied,
/// with weight_error bounding that product's rounding (and pooling entries 1/k^2 that are not powers of
/// two). Throws UnsupportedLayerError for layers too large to unroll.
SlopeRestrictedNetwork slope_restricted_network(const Network& net);

enum class MultiplierKind { PerNeuron, PerLayer };  ///< LipSDP-Neuron, LipSDP-Layer

/// LMIs M_f(rho, lambda) that share rho and one set of multipliers: neuron i of part f takes
/// multiplier groups[f][i]. Each part is a SlopeRestrictedNetwork's LMI; all have the same number of
/// hidden layers, a group's neurons lie in one hidden layer, and part 0 holds every group. One
/// network's LipSDP is the case of one part (groups: each neuron, or each layer); a convolutional
/// network's channel-wise LipSDP is the case of one part per spatial frequency (channelwise_lipsdp).
struct SharedLipSdp {
  std::vector<SlopeRestrictedNetwork> parts;
  std::vector<std::vector<int>> groups;
  int multipliers = 0;  ///< number of groups

  /// Part f's per-neuron multipliers from the shared ones.
  Eigen::VectorXd neuron_multipliers(int part, const Eigen::Ref<const Eigen::VectorXd>& shared) const;
  /// Throws std::invalid_argument on an inconsistent problem.
  void validate() const;
};

/// LipSDP with one multiplier per channel for a network of stride-1 convolutions, each followed by an
/// activation, then a global average pool and a dense head (Dense and activation layers), on l2.
/// Zero padding is a 0/1 mask that commutes with the activations, so it is taken into them (their
/// slopes widened to include 0) and every convolution becomes circular on a torus large enough that
/// nothing wraps; with multipliers constant over positions, the 2-D DFT then splits the LMI into one
/// small LMI per frequency (pairs of conjugate frequencies share one, in real form: [Re, -Im; Im, Re]),
/// and the global pool only reaches frequency 0. The frequencies' rounding is carried in weight_error,
/// so lipsdp_certified_bound's proof covers it. Throws UnsupportedLayerError for other networks.
SharedLipSdp channelwise_lipsdp(const Network& net);
/// Whether channelwise_lipsdp takes the network (its layers' kinds and order), without building it.
bool channelwise_lipsdp_applies(const Network& net);

/// Where LipSdpOptions::primal_dual is unset, the primal-dual method solves LMIs with at least this many
/// hidden layers. Its time against the barrier method's (2 cores, one run of each): on ECLipsE's grid
/// 1.18 / 1.70x with 5 / 10 weight matrices of width 100, 1.16 / 1.47 / 1.04x with 20 of width
/// 20 / 60 / 100, 1.14 / 1.18 / 0.91x with 30, 0.72x with 50 of width 60; on GLipSDP's MNIST W64 with
/// 8 / 16 / 32 / 64 weights 1.19 / 0.95 / 0.58 / 0.35x.
constexpr int kLipSdpPrimalDualFromLayers = 24;

struct LipSdpOptions {
  MultiplierKind multipliers = MultiplierKind::PerNeuron;
  double tol = 1e-7;           ///< stop when the barrier's optimality gap is below tol * rho
  int max_newton_steps = 400;  ///< per path (a shared problem follows one per round of its active set)
  /// Newton systems with at least this many unknowns are factorised in single precision and their
  /// solves refined to double precision (falling back to a double factorisation where that fails).
  int single_precision_newton_from = 768;
  /// Stop, with status "above", at the first centred point of the path whose lower estimate of the
  /// optimum, rho - nu / t (exact on the central path), exceeds this value of rho: a solve that only
  /// matters if it beats a bound already proved need not go on once it cannot.
  double stop_above = std::numeric_limits<double>::infinity();
  /// Solve one LMI with a multiplier per neuron (LipSDP-Neuron) by Mehrotra's primal-dual method on the
  /// chordal cone (true) or by the barrier method (false); unset, by depth (kLipSdpPrimalDualFromLayers).
  /// It needs 3-5x fewer Newton systems than the barrier method, but each costs 2-4x a barrier step, so
  /// it only pays on deep networks. It falls back to the barrier method where it fails, and is not used
  /// with a finite stop_above, whose lower estimate only the barrier's central path gives.
  std::optional<bool> primal_dual;
};

struct LipSdpResult {
  Eigen::VectorXd multipliers;  ///< lambda, one per neuron (equal within a layer for PerLayer)
  double rho = 0.0;             ///< the solver's objective, an estimate of L^2 (not certified)
  /// sqrt(rho) proved by lipsdp_certified_bound from `multipliers`; +inf if no proof succeeded.
  double certified_upper = std::numeric_limits<double>::infinity();
  int newton_steps = 0;
  /// Of newton_steps, the primal-dual method's iterations (the rest are the barrier method's), and of
  /// those the ones whose directions came from chains of block-tridiagonal inverses, O(d w^3) for d
  /// layers of width w, rather than from dense products, O(d^2 w^3) (taken near the optimum, where M is
  /// too ill-conditioned for the chains).
  int primal_dual_steps = 0, chain_steps = 0;
  /// The path's duality-gap estimate nu / (t rho) at its last centred point: exact on the central
  /// path, an estimate near it (the certified bound is proved separately).
  double relative_gap = 0.0;
  /// "optimal", "max_steps", "stalled", "above" (options.stop_above), or "max_rounds" (a shared
  /// problem whose LMIs the active set never all held)
  std::string status;
};

/// Minimises rho over (rho, lambda) by a log-barrier Newton method. The Newton system is over the
/// multipliers only; its entries tr(X A_i X A_j), X = M^-1, come from one backward block elimination
/// of M per step. Inputs wider than the first hidden layer are first projected onto W_0's row space
/// (an equivalent problem), and the result is proved on the original weights.
LipSdpResult solve_lipsdp(const SlopeRestrictedNetwork& net, const LipSdpOptions& options = {});

/// The same for a shared problem (its options.multipliers is not used: the groups say which
/// multipliers there are); `multipliers` of the result holds one entry per group.
LipSdpResult solve_lipsdp(const SharedLipSdp& problem, const LipSdpOptions& options = {});

/// Certified l2 Lipschitz bound from multipliers lambda >= 0: the smallest rho on a ladder just above
/// its floating-point estimate for which M(rho, lambda) is proved positive semidefinite — a Cholesky
/// factorisation of the power-of-two-scaled, shifted matrix whose shift covers the rounding errors of
/// forming M and of the factorisation — returned as sqrt(rho) rounded up. +inf when lambda is
/// infeasible (negative, non-finite, or no proof succeeds).
double lipsdp_certified_bound(const SlopeRestrictedNetwork& net, const Eigen::Ref<const Eigen::VectorXd>& multipliers);
/// The same for a shared problem, one multiplier per group: the smallest rho on one ladder, from the
/// largest of the parts' estimates, at which every part's M is proved positive semidefinite.
double lipsdp_certified_bound(const SharedLipSdp& problem, const Eigen::Ref<const Eigen::VectorXd>& multipliers);

}  // namespace lipcert
