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
struct BatchInput;
struct BatchOutput;
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

  /// Where the last call to bound() spent its time (wall seconds): packing the subdomains on the host,
  /// the device (uploads, kernels, downloads), and turning the device's arrays into SubdomainBounds.
  struct Timing {
    double pack_s = 0.0, device_s = 0.0, assemble_s = 0.0;
  };
  Timing last_timing() const { return timing_; }

 private:
  const Network& net_;
  std::unique_ptr<detail::NetworkPlan> plan_;
  std::unique_ptr<detail::DeviceBatchBounder> device_;
  std::unique_ptr<detail::BatchInput> input_;  // page-locked host buffers, kept between calls
  std::unique_ptr<detail::BatchOutput> output_;
  Timing timing_;
  std::mutex mutex_;  // the device and host buffers serve one batch at a time
};

}  // namespace lipcert::cuda
