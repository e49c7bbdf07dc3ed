#pragma once
/// Bounds over one branch-and-bound subdomain of a piecewise-linear network: an input box plus a
/// partial assignment of activation states. Everything certified is rounded outward.
///
/// Pre-activation bounds are interval bounds, tightened by exact affine (symbolic) bounds for the
/// layers whose activation pattern before them is fixed: there z = A x + c on the whole subdomain and
/// its range over the box is computed without the wrapping of layer-by-layer intervals. After free
/// neurons, linear_relaxation tightens them by linear bounds propagated backward through each
/// activation's linear relaxation (CROWN); the GPU bounder computes the interval bounds only.
#include <cstdint>
#include <vector>

#include "lipcert/network.hpp"
#include "lipcert/operator_norm.hpp"

namespace lipcert {

/// State of one neuron: -1 inactive (z <= 0), 0 free, +1 active (z >= 0). A MaxMin layer's states
/// are one per pair, at the pair's first index (the second half stays 0): +1 kept (a >= b), -1
/// swapped (a <= b); its "neurons" in SubdomainBound::Unstable are those pairs too.
using NeuronStates = std::vector<int8_t>;

struct Subdomain {
  Eigen::VectorXd lower, upper;       ///< input box; infinite bounds mean no constraint
  std::vector<NeuronStates> states;   ///< one vector per activation layer; empty = all free
};

struct SubdomainBound {
  /// False when the interval bounds contradict the assignment (the subdomain holds no point).
  bool feasible = true;
  /// Certified bounds of every activation layer's input (pre-activations), per activation layer.
  std::vector<Eigen::VectorXd> pre_lower, pre_upper;
  /// Every Jacobian J of the network at a point of the subdomain where it is differentiable
  /// satisfies |J - jacobian_center| <= jacobian_radius elementwise.
  Eigen::MatrixXd jacobian_center, jacobian_radius;
  /// Certified upper bound on max ||J||_{p->q} over that set: the minimum of the entrywise-majorant
  /// bound || |C| + R || and the midpoint-plus-radius bound ||C|| + ||R||.
  double norm_upper = 0.0;
  /// The subdomain's region inside the box: rows g x <= h, one per assigned neuron of the layers whose
  /// pre-activations are exact affine functions of x (no free neuron before them), with elementwise
  /// bounds on the rounding errors of g and h.
  Eigen::MatrixXd region_g, region_g_error;
  Eigen::VectorXd region_h, region_h_error;
  /// Free neurons whose derivative is not fixed by the bounds: (activation layer, neuron, score);
  /// the score (a heuristic) estimates how much fixing the neuron tightens the Jacobian set.
  struct Unstable {
    int layer;
    int neuron;
    double score;
  };
  std::vector<Unstable> unstable;
};

/// Bounds one subdomain. Throws std::invalid_argument for smooth activations (tanh, sigmoid): the
/// Jacobian set of a piecewise-linear network is what branch and bound splits. Networks with MaxMin
/// get interval bounds (no linear relaxation) after free pairs.
SubdomainBound bound_subdomain(const Network& net, const Subdomain& subdomain, Norm p, Norm q,
                               bool linear_relaxation = true);

/// The pre-activations of the first activation layer with a free neuron (one whose derivative b does
/// not fix) as what they are on the whole subdomain, the exact affine map z = a x + c of the input,
/// with elementwise bounds a_error, c_error on the rounding errors of a and c. b is bound_subdomain's
/// for the subdomain. layer = -1 where no layer has a free neuron or a MaxMin layer comes first.
struct ExactPreActivations {
  int layer = -1;  ///< activation layer index, as in SubdomainBound::Unstable
  Eigen::MatrixXd a, a_error;
  Eigen::VectorXd c, c_error;
};
ExactPreActivations first_free_layer(const Network& net, const Subdomain& subdomain, const SubdomainBound& b);

/// Bounds a batch of subdomains in parallel on the CPU threads (OpenMP).
std::vector<SubdomainBound> bound_subdomains(const Network& net, const std::vector<Subdomain>& subdomains,
                                             Norm p, Norm q, bool linear_relaxation = true);

/// Bounds batches of subdomains of one network. Branch and bound takes any implementation: the CPU one
/// below, or lipcert::cuda::GpuSubdomainBounder. An instance may be used by one thread at a time.
class SubdomainBounder {
 public:
  virtual ~SubdomainBounder() = default;
  virtual std::vector<SubdomainBound> bound(const std::vector<Subdomain>& subdomains, Norm p, Norm q) = 0;
  /// Subdomains worth bounding per call (a GPU wants thousands, the CPU a few per thread).
  virtual int preferred_batch() const = 0;
};

class CpuSubdomainBounder final : public SubdomainBounder {
 public:
  explicit CpuSubdomainBounder(const Network& net, bool linear_relaxation = true)
      : net_(net), linear_relaxation_(linear_relaxation) {}
  std::vector<SubdomainBound> bound(const std::vector<Subdomain>& subdomains, Norm p, Norm q) override;
  int preferred_batch() const override { return 32; }

 private:
  const Network& net_;
  bool linear_relaxation_;
};

// Pieces shared by every implementation, so that they compute the same bounds.

/// The derivative interval [mid - radius, mid + radius] of z -> z (z >= 0), slope z (z < 0) over
/// [lo, hi] (already intersected with the neuron's state: +1 active, -1 inactive, 0 free).
struct DerivativeInterval {
  double mid, radius;
};
DerivativeInterval derivative_interval(double lo, double hi, int state, double slope);

/// Certified upper bound on max ||J||_{p->q} over {J : |J - center| <= radius}: the minimum of the
/// entrywise-majorant bound || |C| + R || and the midpoint-plus-radius bound ||C|| + ||R||.
double jacobian_set_norm_upper(const Eigen::MatrixXd& center, const Eigen::MatrixXd& radius, Norm p, Norm q);

/// The branching record of a neuron whose derivative radius is nonzero (b.pre_lower/upper filled in).
SubdomainBound::Unstable unstable_neuron(const SubdomainBound& b, int layer, int neuron, double derivative_radius);

}  // namespace lipcert
