#pragma once
/// Batched subdomain bounds on the GPU: the same certified quantities as lipcert::bound_subdomains
/// (interval pre-activations tightened by exact affine prefixes, the interval Jacobian set and its norm,
/// the region rows for LP pruning), for thousands of subdomains per call, in float64 with a priori
/// rounding-error bounds and directed-rounding intrinsics. Affine layers run as dense matrices.
#include <memory>
#include <mutex>

#include "lipcert/subdomain_bounds.hpp"

namespace lipcert::cuda {

namespace detail {
class DeviceBatchBounder;
struct NetworkPlan;
}  // namespace detail

class GpuSubdomainBounder final : public SubdomainBounder {
 public:
  /// Uploads the network. Throws std::invalid_argument for networks outside the GPU path (smooth
  /// activations; an affine layer with more than max_dense_entries entries as a dense matrix) and
  /// std::runtime_error when no CUDA device can be used. net must outlive the bounder.
  explicit GpuSubdomainBounder(const Network& net, long long max_dense_entries = 64LL << 20);
  ~GpuSubdomainBounder() override;

  /// Subdomains with an unbounded box are bounded on the CPU (interval arithmetic needs finite ends).
  std::vector<SubdomainBound> bound(const std::vector<Subdomain>& subdomains, Norm p, Norm q) override;
  int preferred_batch() const override { return 4096; }

 private:
  const Network& net_;
  std::unique_ptr<detail::NetworkPlan> plan_;
  std::unique_ptr<detail::DeviceBatchBounder> device_;
  std::mutex mutex_;  // the device buffers serve one batch at a time
};

}  // namespace lipcert::cuda
