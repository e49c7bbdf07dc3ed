#pragma once
// The device half of GpuSubdomainBounder: raw buffers and kernels, no Eigen (nvcc compiles this half,
// the host half in subdomain_bounds.cpp builds the plan and turns the results into SubdomainBounds).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace lipcert::cuda::detail {

/// The network as the kernels see it: affine layers as dense row-major (out, in) matrices with a full
/// bias vector, activations as their negative slope; reshapes dropped.
struct NetworkPlan {
  struct Step {
    bool affine;
    int in, out;        // sizes (equal for activations)
    int matrix;         // affine: index into weights / biases
    double slope;       // activation: derivative for z < 0
    int offset;         // activation: first neuron of this layer in the flat per-subdomain neuron array
    int activation;     // activation: index among the activation layers
  };
  int input_size = 0, output_size = 0, total_neurons = 0, max_width = 0;
  std::vector<Step> steps;
  std::vector<std::vector<double>> weights, biases;
};

/// One assigned neuron whose region row is wanted (if the layers before it are fixed in subdomain b).
struct RegionCandidate {
  int subdomain, activation, neuron, sign;
};

/// Page-locked host memory (cudaMallocHost): transfers to and from it run at full bus speed, and the
/// bounder keeps its buffers between batches, so the slow allocation happens once.
void* pinned_allocate(size_t bytes);
void pinned_free(void* p) noexcept;

template <typename T>
struct PinnedAllocator {
  using value_type = T;
  PinnedAllocator() = default;
  template <typename U>
  PinnedAllocator(const PinnedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(pinned_allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t) noexcept { pinned_free(p); }
  template <typename U>
  bool operator==(const PinnedAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const PinnedAllocator<U>&) const { return false; }
};

template <typename T>
using PinnedVector = std::vector<T, PinnedAllocator<T>>;

struct BatchInput {
  int batch = 0;
  /// The norm pair as 1, 2 or 0 (infinity), for the closed-form Jacobian-set norms computed on the device.
  int p = 2, q = 2;
  PinnedVector<double> lower, upper;            // batch x input_size
  PinnedVector<int8_t> states;                  // batch x total_neurons
  PinnedVector<RegionCandidate> candidates;     // grouped by activation layer, in layer order
};

struct BatchOutput {
  PinnedVector<int> feasible;                   // batch
  PinnedVector<double> pre_lower, pre_upper;    // batch x total_neurons
  PinnedVector<double> derivative_radius;       // batch x total_neurons: nonzero where a neuron is unstable
  PinnedVector<double> jacobian_center, jacobian_radius;  // batch x output_size x input_size
  /// || |C| + R ||_{p->q} where it has a closed form (p = 1 or q = inf), rounded upward; for p = q = 2
  /// min(|| |C| + R ||_2, ||C||_2 + ||R||_2) proved on the device (jacobian_norm.hpp); else NaN.
  PinnedVector<double> norm_upper;              // batch
  PinnedVector<double> g, g_error;              // candidates x input_size
  PinnedVector<double> h, h_error;              // candidates
  PinnedVector<int> used;                       // candidates: 1 where the row belongs to the region
};

/// Owns the device copy of one network and the work buffers; not thread-safe (one batch at a time).
class DeviceBatchBounder {
 public:
  explicit DeviceBatchBounder(const NetworkPlan& plan);
  ~DeviceBatchBounder();
  DeviceBatchBounder(const DeviceBatchBounder&) = delete;
  DeviceBatchBounder& operator=(const DeviceBatchBounder&) = delete;

  /// Bounds input.batch subdomains; the largest batch that fits the work buffers is chosen by the caller.
  void run(const BatchInput& input, BatchOutput& output);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace lipcert::cuda::detail
